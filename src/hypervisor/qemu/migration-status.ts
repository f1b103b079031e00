/**
 * Following a QEMU migration (to a save file or to another host) over QMP: the bandwidth cap lifted,
 * query-migrate polled to a terminal state.
 */
import { XenoError } from '../../common/errors.js';
import type { Vm } from '../backend.js';

/** QEMU caps migration at 128 MiB/s by default; a save or a migration takes what the link gives. */
export const UNCAPPED_BANDWIDTH = 100 * 1024 * 1024 * 1024;

export interface QueryMigrate {
  status?: string;
  'total-time'?: number;
  'setup-time'?: number;
  downtime?: number;
  'error-desc'?: string;
  ram?: { total?: number; remaining?: number; transferred?: number; mbps?: number; 'dirty-sync-count'?: number; 'multifd-bytes'?: number; 'postcopy-requests'?: number };
  'cpu-throttle-percentage'?: number;
  'socket-address'?: Array<{ type: string; host?: string; port?: string | number }>;
}

export interface WaitMigrationOptions {
  pollMs?: number;
  timeoutMs?: number;
  /** The source side: QEMU 7.2 may answer `completed` before total-time/downtime are filled in; query again, briefly. */
  wantStats?: boolean;
  /** Ends the wait early with this error (the other end went away...). */
  abort?: () => Error | undefined;
  onPoll?: (q: QueryMigrate) => void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The poll interval, cut short by a MIGRATION event (QEMU sends them with the `events` capability on). */
function nextPoll(vm: Vm, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      vm.off('qmp-event', onEvent);
      resolve();
    };
    const onEvent = (e: { event?: string }) => {
      if (e.event === 'MIGRATION') done();
    };
    const timer = setTimeout(done, ms);
    vm.on('qmp-event', onEvent);
  });
}

export async function liftBandwidthCap(vm: Vm): Promise<void> {
  await vm.command('migrate-set-parameters', { 'max-bandwidth': UNCAPPED_BANDWIDTH });
}

/** Poll query-migrate until completed (resolves) or failed/cancelled (throws). */
export async function waitMigration(vm: Vm, opts: WaitMigrationOptions = {}): Promise<QueryMigrate> {
  const poll = opts.pollMs ?? 10;
  const deadline = Date.now() + (opts.timeoutMs ?? 30 * 60_000);
  for (;;) {
    const failure = opts.abort?.();
    if (failure) throw failure;
    if (vm.exited) throw new XenoError('QEMU_ERROR', 'QEMU exited during the migration');
    const q = await vm.command<QueryMigrate>('query-migrate');
    opts.onPoll?.(q);
    if (q.status === 'completed') {
      // (absent, or 0 until QEMU's migration thread sets total-time and downtime together)
      for (let i = 0; opts.wantStats && i < 50 && (!q['total-time'] || q.downtime === undefined); i++) {
        await sleep(poll);
        Object.assign(q, await vm.command<QueryMigrate>('query-migrate'));
      }
      return q;
    }
    if (q.status === 'failed' || q.status === 'cancelled') {
      throw new XenoError('QEMU_ERROR', `QEMU migration ${q.status}${q['error-desc'] ? `: ${q['error-desc']}` : ''}`);
    }
    if (Date.now() > deadline) throw new XenoError('TIMEOUT', `migration still ${q.status ?? 'not started'} after ${(opts.timeoutMs ?? 1_800_000) / 1000} s`);
    await nextPoll(vm, poll);
  }
}
