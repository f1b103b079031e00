/**
 * The QMP steps of a migration, shared by both ends: TLS-PSK credentials (added at run time with
 * object-add, as libvirt does, so a running source and an `-incoming defer` target both get them),
 * the bandwidth cap lifted, query-migrate polled to a terminal state, and the way back to the
 * guest's own state after a failure.
 */
import { readFileSync } from 'node:fs';
import { XenoError } from '../common/errors.js';
import type { Vm } from '../hypervisor/backend.js';
import { UNCAPPED_BANDWIDTH, waitMigration, type QueryMigrate } from '../hypervisor/qemu/migration-status.js';
import { PSK_IDENTITY, TLS_OBJECT_ID } from './protocol.js';
import { hostCpuFlags, tlsPskPriority } from '../hypervisor/qemu/tls-priority.js';

const MiB = 1024 * 1024;
/** QEMU's own default downtime-limit (ms). */
export const DEFAULT_DOWNTIME_MS = 300;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));


const ACTIVE = ['setup', 'active', 'device', 'pre-switchover', 'cancelling', 'wait-unplug'];

/**
 * How QEMU moves the RAM (chosen by the admin per migration, `xeno migrate`; policy in the README):
 *  - autoConverge: throttle the vcpus when the guest dirties RAM faster than the link (source only);
 *  - postcopy: postcopy-ram on both ends, so the source can switch to postcopy (client.ts decides when);
 *  - parallel: multifd with that many TLS channels (both ends must agree);
 *  - maxDowntimeMs: QEMU's downtime-limit, the stop-and-copy a precopy may end with (source only).
 * QEMU 7.2 takes multifd and postcopy together without a word but breaks at the switch: refused in client.ts.
 */
export interface MigrationTuning {
  autoConverge?: boolean;
  postcopy?: boolean;
  parallel?: number;
  maxDowntimeMs?: number;
}

/** Why a QEMU refused postcopy-ram, said with what the admin can do about it. */
function postcopyRefused(e: unknown): XenoError {
  let sysctl = '?';
  try {
    sysctl = readFileSync('/proc/sys/vm/unprivileged_userfaultfd', 'utf8').trim();
  } catch {
    /* no such knob */
  }
  return new XenoError(
    'HOST_ERROR',
    `postcopy is not available on this host: QEMU says "${e instanceof Error ? e.message : String(e)}". QEMU 7.2 opens userfaultfd with the system call, which an unprivileged QEMU (xeno-qemu-user) may only do with sysctl vm.unprivileged_userfaultfd=1 (now ${sysctl}; Fedora's qemu package sets it); migrate without --postcopy, or set it on the target`,
  );
}

/**
 * TLS-PSK credentials reading DIR/keys.psk, and QEMU's migration told to use them; QEMU is asked
 * back (query-migrate-parameters) so a stream is never sent or accepted in clear. Every channel
 * (the main one, postcopy's return path, each multifd channel) runs under these credentials.
 * Returns what QEMU says, for the log.
 */
export async function useTlsPsk(vm: Vm, endpoint: 'server' | 'client', dir: string, opts: MigrationTuning = {}): Promise<string> {
  const multifd = (opts.parallel ?? 1) > 1;
  // All sent at once and answered in order (QMP runs one monitor's commands one after another):
  // one round trip, not six, while the migration waits for it. Each is checked in turn below.
  const send = <T>(cmd: string, args?: Record<string, unknown>): Promise<T> => {
    const p = vm.command<T>(cmd, args);
    p.catch(() => undefined); // one that fails after an earlier failure is not waited for
    return p;
  };
  const del = send('object-del', { id: TLS_OBJECT_ID }); // left by an earlier attempt
  // MIGRATION events wake waitMigration at each state change (no waiting out a poll interval).
  // Every capability is set either way: an earlier attempt's must not linger.
  const caps = send('migrate-set-capabilities', {
    capabilities: [
      { capability: 'events', state: true },
      { capability: 'multifd', state: multifd },
      ...(endpoint === 'client' ? [{ capability: 'auto-converge', state: opts.autoConverge === true }] : []),
    ],
  });
  const postcopy = send('migrate-set-capabilities', { capabilities: [{ capability: 'postcopy-ram', state: opts.postcopy === true }] });
  const creds = send('object-add', {
    'qom-type': 'tls-creds-psk', id: TLS_OBJECT_ID, endpoint, dir, priority: tlsPskPriority(hostCpuFlags()),
    ...(endpoint === 'client' ? { username: PSK_IDENTITY } : {}),
  });
  const set = send('migrate-set-parameters', {
    'tls-creds': TLS_OBJECT_ID,
    ...(multifd ? { 'multifd-channels': opts.parallel } : {}),
    ...(endpoint === 'client' ? { 'max-bandwidth': UNCAPPED_BANDWIDTH, 'downtime-limit': opts.maxDowntimeMs ?? DEFAULT_DOWNTIME_MS } : {}),
  });
  const asked = send<{ 'tls-creds'?: string }>('query-migrate-parameters');
  await del.catch(() => undefined);
  await caps;
  await postcopy.catch((e: unknown) => {
    throw opts.postcopy ? postcopyRefused(e) : e;
  });
  await creds;
  await set;
  const params = await asked;
  if (params['tls-creds'] !== TLS_OBJECT_ID) throw new XenoError('QEMU_ERROR', `QEMU did not take the TLS credentials for the migration stream (tls-creds '${params['tls-creds'] ?? ''}')`);
  const how = [multifd ? `multifd x${opts.parallel}` : '', opts.postcopy ? 'postcopy-ram' : '', opts.autoConverge ? 'auto-converge' : ''].filter(Boolean).join(', ');
  return `query-migrate-parameters: tls-creds=${params['tls-creds']} (TLS-PSK, ${endpoint}${how ? `; ${how}` : ''})`;
}

/** Capabilities back off (a save to a file, or the next migration, must not find multifd or postcopy still on). */
export async function resetTuning(vm: Vm): Promise<void> {
  const off = ['multifd', 'postcopy-ram', 'auto-converge'].map((capability) => ({ capability, state: false }));
  await vm.command('migrate-set-capabilities', { capabilities: off }).catch(() => undefined);
}

/** Undo useTlsPsk on a QEMU that stays (a failed migration's source). */
export async function dropTlsPsk(vm: Vm): Promise<void> {
  if (vm.exited) return;
  await vm.command('migrate-set-parameters', { 'tls-creds': '' }).catch(() => undefined);
  await resetTuning(vm);
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
