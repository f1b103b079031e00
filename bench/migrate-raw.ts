/**
 * The raw-QEMU side of the migrate bench: two QEMUs started with the argv xeno would use, migrating
 * over plain TCP with the same tuning xeno is asked for (auto-converge, multifd channels, postcopy
 * switched after the first unconverged pass, the same downtime-limit), timed from the target's
 * start to `cont` on it. Guest-seen downtime: QEMU's own for a precopy; for a postcopy, from the
 * source saying postcopy-active (the guest stopped there) to `cont` answered on the target.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { QemuBackend, qemuPaths } from '../src/hypervisor/qemu/qemu-backend.js';
import { QmpClient } from '../src/hypervisor/qemu/qmp.js';
import { UNCAPPED_BANDWIDTH } from '../src/hypervisor/qemu/migration-status.js';
import { PSK_IDENTITY } from '../src/migration/protocol.js';
import { hostCpuFlags, tlsPskPriority } from '../src/hypervisor/qemu/tls-priority.js';
import type { DomainConfig } from '../src/model/domain-config.js';
import { sleep } from '../test/helpers/harness.js';
import { rawCgroup } from './lib.js';

/** A migration mode of the bench: precopy (auto-converge), postcopy, or multifd:N. */
export type Mode = 'precopy' | 'postcopy' | `multifd:${number}`;

export function parseModes(arg: string | undefined, def: Mode[]): Mode[] {
  if (!arg) return def;
  return arg.split(',').map((m) => {
    if (m !== 'precopy' && m !== 'postcopy' && !/^multifd:\d+$/.test(m)) throw new Error(`--mode: precopy, postcopy or multifd:N, not ${m}`);
    return m as Mode;
  });
}

export const parallelOf = (m: Mode) => (m.startsWith('multifd:') ? Number(m.slice('multifd:'.length)) : 1);

export interface Raw {
  child: ChildProcess;
  qmp: QmpClient;
  runDir: string;
}

export interface Q {
  status?: string;
  'total-time'?: number;
  downtime?: number;
  'error-desc'?: string;
  'socket-address'?: Array<{ port?: string | number }>;
  'cpu-throttle-percentage'?: number;
  ram?: { transferred?: number; 'dirty-sync-count'?: number; remaining?: number };
}

export interface RawFigures {
  seconds: number;
  /** What the guest saw: QEMU's downtime (precopy) or switch to cont (postcopy), ms. */
  guestDowntimeMs: number;
  throttle: number;
  postcopy: boolean;
  /** The target QEMU's start, until its QMP answers, ms. */
  targetStartMs: number;
  /** QEMU's own total-time of the migration (from `migrate` to completed), ms. */
  qemuTotalMs: number;
  /** RAM bytes QEMU sent. */
  bytes: number;
}

export async function waitMigrated(qmp: QmpClient, stats: boolean, onPoll?: (q: Q) => Promise<void>): Promise<Q> {
  for (;;) {
    const q = await qmp.execute<Q>('query-migrate');
    if (q.status === 'completed') {
      // QEMU 7.2 may say completed before its figures are filled
      for (let i = 0; stats && i < 300 && (!q['total-time'] || q.downtime === undefined); i++) {
        await sleep(5);
        Object.assign(q, await qmp.execute<Q>('query-migrate'));
      }
      return q;
    }
    if (q.status === 'failed' || q.status === 'cancelled') throw new Error(`raw migration ${q.status}: ${q['error-desc'] ?? ''}`);
    await onPoll?.(q);
    await sleep(5);
  }
}

export class RawQemu {
  private n = 0;
  readonly cgroup = rawCgroup(`${process.pid}-${Math.random()}`);
  constructor(
    private readonly backend: QemuBackend,
    private readonly dir: string,
    private readonly config: DomainConfig,
    /** A change to xeno's argv this raw side needs (e.g. the save bench's exec: migration). */
    private readonly argvFilter: (argv: string[]) => string[] = (a) => a,
  ) {}

  async start(incoming: boolean): Promise<Raw> {
    const runDir = path.join(this.dir, `raw${this.n++}`);
    mkdirSync(qemuPaths(runDir).dir, { recursive: true });
    const argv = this.argvFilter(this.backend.argv({
      domid: 900 + this.n, uuid: '00000000-0000-4000-8000-000000000900', config: this.config, runDir,
      machineType: this.backend.caps.machineType, nics: [], incoming, logFile: '/dev/null',
    }));
    const child = spawn(this.backend.binary, argv, { stdio: 'ignore' });
    await this.cgroup.add(child.pid!);
    const qmp = await QmpClient.connect(qemuPaths(runDir).qmp, 15_000);
    return { child, qmp, runDir };
  }

  async stop(r: Raw): Promise<void> {
    await r.qmp.execute('quit').catch(() => undefined);
    if (r.child.exitCode === null) await new Promise((res) => r.child.once('exit', res));
    rmSync(r.runDir, { recursive: true, force: true });
  }

  private static async tune(qmp: QmpClient, mode: Mode, source: boolean, maxDowntimeMs: number): Promise<void> {
    const parallel = parallelOf(mode);
    await qmp.execute('migrate-set-capabilities', {
      capabilities: [
        { capability: 'multifd', state: parallel > 1 },
        { capability: 'postcopy-ram', state: mode === 'postcopy' },
        ...(source ? [{ capability: 'auto-converge', state: mode !== 'postcopy' }] : []),
      ],
    });
    await qmp.execute('migrate-set-parameters', {
      ...(parallel > 1 ? { 'multifd-channels': parallel } : {}),
      ...(source ? { 'max-bandwidth': UNCAPPED_BANDWIDTH, 'downtime-limit': maxDowntimeMs } : {}),
    });
  }

  /**
   * The stream over TLS-PSK as xeno sets it up (tls-creds-psk objects from a creds dir with its
   * dh-params.pem, xeno's GnuTLS priority; XENO_BENCH_TLS_PRIORITY tries another).
   */
  private static async useTls(qmp: QmpClient, endpoint: 'client' | 'server', dir: string): Promise<void> {
    await qmp.execute('object-del', { id: 'rawtls0' }).catch(() => undefined);
    await qmp.execute('object-add', { 'qom-type': 'tls-creds-psk', id: 'rawtls0', endpoint, dir, priority: process.env.XENO_BENCH_TLS_PRIORITY ?? tlsPskPriority(hostCpuFlags()), ...(endpoint === 'client' ? { username: PSK_IDENTITY } : {}) });
    await qmp.execute('migrate-set-parameters', { 'tls-creds': 'rawtls0' });
  }

  /**
   * Live-migrate `src` into a fresh QEMU over plain TCP (or, given `tlsDir`, over TLS-PSK as xeno
   * does, to show what the encryption itself costs): the figures and the new QEMU.
   */
  async migrate(src: Raw, mode: Mode, maxDowntimeMs: number, tlsDir?: string): Promise<[RawFigures, Raw]> {
    const t0 = performance.now();
    const dst = await this.start(true);
    const targetStartMs = performance.now() - t0;
    await RawQemu.tune(src.qmp, mode, true, maxDowntimeMs);
    await RawQemu.tune(dst.qmp, mode, false, maxDowntimeMs);
    if (tlsDir) await Promise.all([RawQemu.useTls(src.qmp, 'client', tlsDir), RawQemu.useTls(dst.qmp, 'server', tlsDir)]);
    else await src.qmp.execute('migrate-set-parameters', { 'tls-creds': '' });
    await dst.qmp.execute('migrate-incoming', { uri: 'tcp:127.0.0.1:0' });
    let port = 0;
    while (!port) {
      port = Number((await dst.qmp.execute<Q>('query-migrate'))['socket-address']?.[0]?.port);
      if (!port) await sleep(5);
    }
    await src.qmp.execute('migrate', { uri: `tcp:127.0.0.1:${port}` });
    let asked = false;
    let switchedAt: number | undefined;
    let runningAt: number | undefined;
    const q = await waitMigrated(src.qmp, true, async (m) => {
      if (mode !== 'postcopy') return;
      if (!asked && m.status === 'active' && (m.ram?.['dirty-sync-count'] ?? 0) >= 2) {
        asked = true;
        await src.qmp.execute('migrate-start-postcopy');
      }
      if (m.status === 'postcopy-active' && switchedAt === undefined) {
        switchedAt = performance.now();
        await dst.qmp.execute('cont');
        runningAt = performance.now();
      }
    });
    await waitMigrated(dst.qmp, false);
    if (runningAt === undefined) await dst.qmp.execute('cont');
    const seconds = (performance.now() - t0) / 1000;
    await this.stop(src);
    const guestDowntimeMs = switchedAt !== undefined ? runningAt! - switchedAt : q.downtime ?? 0;
    return [{ seconds, guestDowntimeMs, throttle: q['cpu-throttle-percentage'] ?? 0, postcopy: switchedAt !== undefined, targetStartMs, qemuTotalMs: q['total-time'] ?? NaN, bytes: q.ram?.transferred ?? NaN }, dst];
  }
}
