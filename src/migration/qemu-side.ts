/**
 * The QMP steps of a migration, shared by both ends: TLS-PSK credentials (added at run time with
 * object-add, as libvirt does, so a running source and an `-incoming defer` target both get them),
 * the bandwidth cap lifted, query-migrate polled to a terminal state, and the way back to the
 * guest's own state after a failure.
 */
import { XenoError } from '../common/errors.js';
import type { Vm } from '../hypervisor/backend.js';
import { UNCAPPED_BANDWIDTH, waitMigration, type QueryMigrate } from '../hypervisor/qemu/migration-status.js';
import { PSK_IDENTITY, TLS_OBJECT_ID } from './protocol.js';

const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));


const ACTIVE = ['setup', 'active', 'device', 'pre-switchover', 'cancelling', 'wait-unplug'];

/**
 * TLS-PSK credentials reading DIR/keys.psk, and QEMU's migration told to use them; QEMU is asked
 * back (query-migrate-parameters) so a stream is never sent or accepted in clear. Returns what
 * QEMU says, for the log.
 */
export async function useTlsPsk(vm: Vm, endpoint: 'server' | 'client', dir: string, opts: { autoConverge?: boolean } = {}): Promise<string> {
  await vm.command('object-del', { id: TLS_OBJECT_ID }).catch(() => undefined); // left by an earlier attempt
  // MIGRATION events wake waitMigration at each state change (no waiting out a poll interval).
  // Policy for a live source: auto-converge, so QEMU throttles the vcpus when the guest dirties
  // RAM faster than the link carries it (a guest that converges is never throttled).
  await vm.command('migrate-set-capabilities', {
    capabilities: [{ capability: 'events', state: true }, ...(endpoint === 'client' ? [{ capability: 'auto-converge', state: opts.autoConverge === true }] : [])],
  });
  await vm.command('object-add', {
    'qom-type': 'tls-creds-psk', id: TLS_OBJECT_ID, endpoint, dir,
    ...(endpoint === 'client' ? { username: PSK_IDENTITY } : {}),
  });
  await vm.command('migrate-set-parameters', {
    'tls-creds': TLS_OBJECT_ID,
    ...(endpoint === 'client' ? { 'max-bandwidth': UNCAPPED_BANDWIDTH } : {}),
  });
  const params = await vm.command<{ 'tls-creds'?: string }>('query-migrate-parameters');
  if (params['tls-creds'] !== TLS_OBJECT_ID) throw new XenoError('QEMU_ERROR', `QEMU did not take the TLS credentials for the migration stream (tls-creds '${params['tls-creds'] ?? ''}')`);
  return `query-migrate-parameters: tls-creds=${params['tls-creds']} (TLS-PSK, ${endpoint})`;
}

/** Undo useTlsPsk on a QEMU that stays (a failed migration's source). */
export async function dropTlsPsk(vm: Vm): Promise<void> {
  if (vm.exited) return;
  await vm.command('migrate-set-parameters', { 'tls-creds': '' }).catch(() => undefined);
  await vm.command('object-del', { id: TLS_OBJECT_ID }).catch(() => undefined);
}

export { waitMigration, type QueryMigrate };

/**
 * QEMU 7.2 may answer `completed` before total-time and downtime are filled in (absent, or present
 * as 0 until the migration thread sets both at once): query again until they are (bounded). Off the
 * critical path: the caller hands the guest over meanwhile.
 */
export async function migrationFigures(vm: Vm, q: QueryMigrate, waitMs = 3000): Promise<QueryMigrate> {
  const deadline = Date.now() + waitMs;
  while ((!q['total-time'] || q.downtime === undefined) && Date.now() < deadline && !vm.exited) {
    await sleep(10);
    try {
      Object.assign(q, await vm.command<QueryMigrate>('query-migrate', undefined, 2000));
    } catch {
      break;
    }
  }
  return q;
}

/** Cancel an outgoing migration and wait (bounded) until QEMU is no longer migrating. */
export async function cancelMigration(vm: Vm, waitMs = 10_000): Promise<void> {
  if (vm.exited) return;
  await vm.command('migrate_cancel', undefined, Math.min(5000, waitMs)).catch(() => undefined);
  const deadline = Date.now() + waitMs;
  while (Date.now() < deadline && !vm.exited) {
    try {
      const q = await vm.command<QueryMigrate>('query-migrate', undefined, 2000);
      if (!q.status || !ACTIVE.includes(q.status)) return;
    } catch {
      return;
    }
    await sleep(10);
  }
}

/**
 * Back to the guest's own state after a failed outgoing migration. From `postmigrate` (the stream
 * completed, disks inactivated) `cont` is the only way out; for a guest that was paused, `stop` is
 * pipelined right behind it.
 */
export async function backToOwnState(vm: Vm, wasRunning: boolean): Promise<void> {
  const st = await vm.runState();
  if (wasRunning) {
    if (st !== 'running') await vm.resume();
    return;
  }
  if (st === 'postmigrate') await Promise.all([vm.command('cont'), vm.command('stop')]);
  else if (st === 'running') await vm.pause();
}

/** MiB of RAM the QEMU was started with: the RAM size its migration stream has. */
export async function bootMemoryMb(vm: Vm): Promise<number | null> {
  try {
    const s = await vm.command<{ 'base-memory': number; 'plugged-memory'?: number }>('query-memory-size-summary');
    return Math.round((s['base-memory'] + (s['plugged-memory'] ?? 0)) / MiB);
  } catch {
    return null;
  }
}

/** The TCP port an `-incoming` QEMU listens on after `migrate-incoming tcp:ADDR:0`. */
export async function incomingPort(vm: Vm): Promise<number> {
  for (let i = 0; i < 100; i++) {
    const q = await vm.command<QueryMigrate>('query-migrate');
    const port = Number(q['socket-address']?.find((s) => s.type === 'inet')?.port);
    if (port > 0) return port;
    await sleep(10);
  }
  throw new XenoError('QEMU_ERROR', 'QEMU did not report the port it listens on for the incoming migration');
}
