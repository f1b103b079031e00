/**
 * Live migration: xeno (`POST /v1/domains/DOM/migrate` between two xenods on this machine: the
 * authenticated control protocol, the stream encrypted and authenticated with TLS-PSK) versus raw
 * QEMU doing a plain-TCP migration between two QEMUs (the argv xeno would use, bandwidth cap lifted,
 * the same auto-converge policy), alternating rounds in one run. Each side's guest moves back and
 * forth between its two ends. For each guest load (guest-load.ts: idle, a console line every 10 ms,
 * N MiB/s dirtied) the same rounds are run.
 *  - raw:  start the target QEMU (-incoming defer), migrate-incoming tcp:127.0.0.1:0, migrate from
 *          the source, wait completed, cont on the target. Timed from the target's start to `cont`.
 *  - xeno: the API call, from the request to the answer (the guest running on the target).
 * Targets (issue 11): total <= 1.1x raw, QEMU downtime <= raw + 10 ms.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { QemuBackend, qemuPaths } from '../src/hypervisor/qemu/qemu-backend.js';
import { QmpClient } from '../src/hypervisor/qemu/qmp.js';
import type { MigrateResult } from '../src/migration/client.js';
import type { DomainConfig } from '../src/model/domain-config.js';
import { freePort, sleep } from '../test/helpers/harness.js';
import { UNCAPPED_BANDWIDTH } from '../src/hypervisor/qemu/migration-status.js';
import { STOP_LOAD, loadCommand, parseLoads, serialRun, waitSerial } from './guest-load.js';
import { arg, benchDaemon, onInterrupt, guestConfig, rawCgroup, infoRow, median, plusRow, ratioRow, report } from './lib.js';

const MEM = arg('mem', 512);

const config = (name: string): DomainConfig => guestConfig(name, MEM);

interface Raw {
  child: ChildProcess;
  qmp: QmpClient;
  runDir: string;
}

interface Q {
  status?: string;
  'total-time'?: number;
  downtime?: number;
  'error-desc'?: string;
  'socket-address'?: Array<{ port?: string | number }>;
  'cpu-throttle-percentage'?: number;
  ram?: { transferred?: number; 'dirty-sync-count'?: number };
}

async function waitMigrated(qmp: QmpClient, stats: boolean): Promise<Q> {
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
    await sleep(5);
  }
}

class RawQemu {
  private n = 0;
  readonly cgroup = rawCgroup(`${process.pid}-${Math.random()}`);
  constructor(
    private readonly backend: QemuBackend,
    private readonly dir: string,
  ) {}

  async start(incoming: boolean): Promise<Raw> {
    const runDir = path.join(this.dir, `raw${this.n++}`);
    mkdirSync(qemuPaths(runDir).dir, { recursive: true });
    const argv = this.backend.argv({
      domid: 900 + this.n, uuid: '00000000-0000-4000-8000-000000000900', config: config('raw'), runDir,
      machineType: this.backend.caps.machineType, nics: [], incoming, logFile: '/dev/null',
    });
    const child = spawn(this.backend.binary, argv, { stdio: 'ignore' });
    this.cgroup.add(child.pid!);
    const qmp = await QmpClient.connect(qemuPaths(runDir).qmp, 15_000);
    await this.asSource(qmp);
    return { child, qmp, runDir };
  }

  private async asSource(qmp: QmpClient): Promise<void> {
    await qmp.execute('migrate-set-parameters', { 'max-bandwidth': UNCAPPED_BANDWIDTH });
    await qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'auto-converge', state: true }] });
  }

  async stop(r: Raw): Promise<void> {
    await r.qmp.execute('quit').catch(() => undefined);
    if (r.child.exitCode === null) await new Promise((res) => r.child.once('exit', res));
    rmSync(r.runDir, { recursive: true, force: true });
  }

  /** Live-migrate `src` into a fresh QEMU over plain TCP: [seconds, QEMU's figures, the new QEMU]. */
  async migrate(src: Raw): Promise<[number, Q, Raw]> {
    const t0 = performance.now();
    const dst = await this.start(true);
    await dst.qmp.execute('migrate-incoming', { uri: 'tcp:127.0.0.1:0' });
    let port = 0;
    while (!port) {
      port = Number((await dst.qmp.execute<Q>('query-migrate'))['socket-address']?.[0]?.port);
      if (!port) await sleep(5);
    }
    await src.qmp.execute('migrate', { uri: `tcp:127.0.0.1:${port}` });
    const q = await waitMigrated(src.qmp, true);
    await waitMigrated(dst.qmp, false);
    await dst.qmp.execute('cont');
    const t = (performance.now() - t0) / 1000;
    await this.stop(src);
    return [t, q, dst];
  }
}

export async function run(): Promise<void> {
  const rounds = arg('rounds', 5);
  const i = process.argv.indexOf('--load');
  const loads = parseLoads(i >= 0 ? process.argv[i + 1] : undefined, ['idle', 'print', 'dirty:100']);
  const keyDir = path.join('/tmp', `xeno-bench-mig-${process.pid}`);
  mkdirSync(keyDir, { recursive: true, mode: 0o700 });
  const keyDone = onInterrupt(async () => rmSync(keyDir, { recursive: true, force: true }));
  const keyFile = path.join(keyDir, 'relocation.psk');
  writeFileSync(keyFile, randomBytes(32).toString('hex') + '\n', { mode: 0o600 });
  const ports = [await freePort(), await freePort()];
  const cfg = (port: number) => `(xend-relocation-server yes)\n(xend-relocation-port ${port})\n(xend-relocation-address '127.0.0.1')\n(xeno-relocation-key-file '${keyFile}')\n`;
  const ends = [benchDaemon({ configText: cfg(ports[0]!) }), benchDaemon({ configText: cfg(ports[1]!) })];
  let raw: Raw | undefined;
  let rawq: RawQemu | undefined;
  try {
    await Promise.all(ends.map((d) => d.start()));
    const backend = await QemuBackend.create({ binary: 'qemu-system-x86_64', accel: 'auto', cacheDir: ends[0]!.dir });
    const accel = backend.caps.accel;
    rawq = new RawQemu(backend, ends[0]!.dir);
    raw = await rawq.start(false);
    await ends[0]!.client.post('/v1/domains', { config: config('bmig') });
    await Promise.all([waitSerial(qemuPaths(raw.runDir).serial, /heartbeat 3\b/), ends[0]!.waitConsole('bmig', /heartbeat 3\b/, 120_000)]);
    let at = 0;
    for (const load of loads) {
      await serialRun(qemuPaths(raw.runDir).serial, `${STOP_LOAD}; ${loadCommand(load)}`);
      await ends[at]!.guestRun('bmig', `${STOP_LOAD}; ${loadCommand(load)}`, 60_000);
      await sleep(2000);
      const rT: number[] = [];
      const rDown: number[] = [];
      const xT: number[] = [];
      const xDown: number[] = [];
      const xGuestDown: number[] = [];
      const rThrottle: number[] = [];
      const phases: Record<string, number[]> = { handshake: [], prepare: [], stream: [], commit: [] };
      for (let r = 0; r < rounds; r++) {
        const rawSide = async () => {
          const [t, q, next] = await rawq!.migrate(raw!);
          raw = next;
          rT.push(t * 1000);
          rDown.push(q.downtime ?? 0);
          rThrottle.push(q['cpu-throttle-percentage'] ?? 0);
        };
        const xenoSide = async () => {
          const t0 = performance.now();
          const res = await ends[at]!.client.post<MigrateResult>('/v1/domains/bmig/migrate', { host: '127.0.0.1', port: ports[1 - at], live: true });
          xT.push(performance.now() - t0);
          at = 1 - at;
          xDown.push(res.downtimeMs ?? 0);
          xGuestDown.push(res.guestDowntimeMs ?? 0);
          for (const [k, v] of Object.entries(res.phasesMs ?? {})) phases[k]?.push(v);
        };
        for (const side of r % 2 ? [xenoSide, rawSide] : [rawSide, xenoSide]) {
          await side();
          await sleep(1000);
        }
        process.stderr.write(`migrate ${load} round ${r + 1}/${rounds}: raw ${rT[r]!.toFixed(0)} ms (downtime ${rDown[r]} ms) | xeno ${xT[r]!.toFixed(0)} ms (downtime ${xDown[r]} ms, guest ${xGuestDown[r]!.toFixed(0)} ms)\n`);
      }
      const b = (operation: string) => ({ bench: 'migrate', operation: `live migration ${MEM} MiB, ${load}: ${operation}`, unit: 'ms', accel });
      ratioRow(b('total'), median(rT), median(xT), 1.1);
      plusRow(b('QEMU downtime'), median(rDown), median(xDown), 10);
      for (const [k, v] of Object.entries(phases)) if (v.length) infoRow(b(`xeno phase ${k}`), null, median(v));
      infoRow(b('xeno guest downtime incl. commit + resume'), null, median(xGuestDown));
      report(`live migration of a ${MEM} MiB guest, load ${load} (${accel}, ${rounds} rounds, medians; raw = plain TCP, xeno = TLS-PSK)`, [
        ['raw QEMU: target start -> running there (ms)', median(rT)],
        ['xeno: migrate request -> running there (ms)', median(xT)],
        ['raw QEMU downtime (ms)', median(rDown)],
        ['xeno QEMU downtime (ms)', median(xDown)],
        ['raw cpu-throttle-percentage at the end', median(rThrottle)],
        ...Object.entries(phases).map(([k, v]): [string, number] => [`  xeno phase ${k} (ms)`, v.length ? median(v) : NaN]),
        ['xeno guest downtime incl. commit+resume (ms)', median(xGuestDown)],
      ]);
    }
  } finally {
    if (raw && rawq) await rawq.stop(raw).catch(() => undefined);
    await rawq?.cgroup.remove();
    await Promise.all(ends.map((d) => d.cleanup()));
    rmSync(keyDir, { recursive: true, force: true });
    keyDone();
  }
}
