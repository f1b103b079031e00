/**
 * Live migration: xeno (`POST /v1/domains/DOM/migrate` between two xenods on this machine, control
 * protocol + TLS-PSK stream) versus raw QEMU doing the same migration between two QEMUs (the argv
 * xeno would use, the same TLS-PSK credentials, bandwidth cap lifted), alternating rounds in one
 * run. Each side's guest moves back and forth between its two ends, round after round.
 *  - raw:  start the target QEMU (-incoming defer, tls-creds on its command line), migrate-incoming
 *          tcp:127.0.0.1:0, migrate from the source, wait completed, cont on the target; the
 *          source quits. Timed from the target's start to its `cont` answered.
 *  - xeno: the API call, from the request to the answer (the guest running on the target).
 * Reported: wall time, QEMU's total-time and downtime; ratios xeno/raw.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { QemuBackend, qemuPaths } from '../src/hypervisor/qemu/qemu-backend.js';
import { QmpClient } from '../src/hypervisor/qemu/qmp.js';
import type { MigrateResult } from '../src/migration/client.js';
import type { DomainConfig } from '../src/model/domain-config.js';
import { TestDaemon, freePort, sleep } from '../test/helpers/harness.js';
import { UNCAPPED_BANDWIDTH } from '../src/hypervisor/qemu/migration-status.js';
import { arg, guestConfig, median, report } from './lib.js';

const MEM = arg('mem', 256);

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
}

async function waitMigrated(qmp: QmpClient, stats: boolean): Promise<Q> {
  for (;;) {
    const q = await qmp.execute<Q>('query-migrate');
    if (q.status === 'completed') {
      for (let i = 0; stats && i < 50 && (q['total-time'] === undefined || q.downtime === undefined); i++) {
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
  constructor(
    private readonly backend: QemuBackend,
    private readonly dir: string,
    private readonly pskDir: string,
  ) {}

  async start(incoming: boolean): Promise<Raw> {
    const runDir = path.join(this.dir, `raw${this.n++}`);
    mkdirSync(qemuPaths(runDir).dir, { recursive: true });
    const argv = this.backend.argv({
      domid: 900 + this.n, uuid: '00000000-0000-4000-8000-000000000900', config: config('raw'), runDir,
      machineType: this.backend.caps.machineType, nics: [], incoming, tlsPskDir: incoming ? this.pskDir : undefined, logFile: '/dev/null',
    });
    const child = spawn(this.backend.binary, argv, { stdio: 'ignore' });
    const qmp = await QmpClient.connect(qemuPaths(runDir).qmp, 15_000);
    if (incoming) await qmp.execute('migrate-set-parameters', { 'tls-creds': 'xenomig0' });
    else {
      await qmp.execute('object-add', { 'qom-type': 'tls-creds-psk', id: 'xenomig0', endpoint: 'client', dir: this.pskDir, username: 'xeno' });
      await qmp.execute('migrate-set-parameters', { 'tls-creds': 'xenomig0', 'max-bandwidth': UNCAPPED_BANDWIDTH });
    }
    return { child, qmp, runDir };
  }

  async stop(r: Raw): Promise<void> {
    await r.qmp.execute('quit').catch(() => undefined);
    if (r.child.exitCode === null) await new Promise((res) => r.child.once('exit', res));
    rmSync(r.runDir, { recursive: true, force: true });
  }

  /** Live-migrate `src` into a fresh QEMU: [seconds, QEMU's figures, the new QEMU]. */
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
    await dst.qmp.execute('object-del', { id: 'xenomig0' }).catch(() => undefined);
    await dst.qmp.execute('object-add', { 'qom-type': 'tls-creds-psk', id: 'xenomig0', endpoint: 'client', dir: this.pskDir, username: 'xeno' });
    await dst.qmp.execute('migrate-set-parameters', { 'tls-creds': 'xenomig0', 'max-bandwidth': UNCAPPED_BANDWIDTH });
    return [t, q, dst];
  }
}


export async function run(): Promise<void> {
  const rounds = arg('rounds', 5);
  const keyDir = path.join('/tmp', `xeno-bench-mig-${process.pid}`);
  mkdirSync(keyDir, { recursive: true, mode: 0o700 });
  const key = randomBytes(32).toString('hex');
  const keyFile = path.join(keyDir, 'relocation.psk');
  writeFileSync(keyFile, key + '\n', { mode: 0o600 });
  const pskDir = path.join(keyDir, 'psk');
  mkdirSync(pskDir, { mode: 0o700 });
  writeFileSync(path.join(pskDir, 'keys.psk'), `xeno:${key}\n`, { mode: 0o600 });
  const ports = [await freePort(), await freePort()];
  const cfg = (port: number) => `(xend-relocation-server yes)\n(xend-relocation-port ${port})\n(xend-relocation-address '127.0.0.1')\n(xeno-relocation-key-file '${keyFile}')\n`;
  const ends = [new TestDaemon({ configText: cfg(ports[0]!) }), new TestDaemon({ configText: cfg(ports[1]!) })];
  await Promise.all(ends.map((d) => d.start()));
  const backend = await QemuBackend.create({ binary: 'qemu-system-x86_64', accel: 'auto', cacheDir: ends[0]!.dir });
  const rawq = new RawQemu(backend, ends[0]!.dir, pskDir);
  let raw: Raw | undefined;
  try {
    raw = await rawq.start(false);
    await ends[0]!.client.post('/v1/domains', { config: config('bmig') });
    await sleep(15_000); // both guests boot and settle (heartbeat running)
    const rT: number[] = [];
    const rTotal: number[] = [];
    const rDown: number[] = [];
    const xT: number[] = [];
    const xTotal: number[] = [];
    const xDown: number[] = [];
    const xGuestDown: number[] = [];
    const ratioT: number[] = [];
    const ratioD: number[] = [];
    let at = 0;
    for (let i = 0; i < rounds; i++) {
      let a = 0;
      let c = 0;
      const rawSide = async () => {
        const [t, q, next] = await rawq.migrate(raw!);
        raw = next;
        a = t;
        rTotal.push((q['total-time'] ?? 0) / 1000);
        rDown.push(q.downtime ?? 0);
      };
      const xenoSide = async () => {
        const t0 = performance.now();
        const r = await ends[at]!.client.post<MigrateResult>('/v1/domains/bmig/migrate', { host: '127.0.0.1', port: ports[1 - at], live: true });
        c = (performance.now() - t0) / 1000;
        at = 1 - at;
        xTotal.push((r.totalTimeMs ?? 0) / 1000);
        xDown.push(r.downtimeMs ?? 0);
        xGuestDown.push(r.guestDowntimeMs ?? 0);
      };
      for (const side of i % 2 ? [xenoSide, rawSide] : [rawSide, xenoSide]) {
        await side();
        await sleep(1000);
      }
      rT.push(a);
      xT.push(c);
      ratioT.push(c / a);
      ratioD.push(xDown[i]! / Math.max(1, rDown[i]!));
      process.stderr.write(`round ${i + 1}/${rounds}: raw ${a.toFixed(3)} s (downtime ${rDown[i]} ms) | xeno ${c.toFixed(3)} s (downtime ${xDown[i]} ms, guest ${xGuestDown[i]!.toFixed(0)} ms)\n`);
    }
    report(`live migration of a ${MEM} MiB guest over TLS-PSK on one machine (${backend.caps.accel}, ${rounds} rounds, medians)`, [
      ['raw QEMU: target start -> running there (s)', median(rT)],
      ['xeno: migrate request -> running there (s)', median(xT)],
      ['ratio wall time xeno/raw (median of per-round)', median(ratioT)],
      ['raw QEMU total-time (s)', median(rTotal)],
      ['xeno QEMU total-time (s)', median(xTotal)],
      ['raw QEMU downtime (ms)', median(rDown)],
      ['xeno QEMU downtime (ms)', median(xDown)],
      ['ratio downtime xeno/raw (median of per-round)', median(ratioD)],
      ['xeno guest downtime incl. commit+resume (ms)', median(xGuestDown)],
    ]);
  } finally {
    if (raw) await rawq.stop(raw).catch(() => undefined);
    await Promise.all(ends.map((d) => d.cleanup()));
    rmSync(keyDir, { recursive: true, force: true });
  }
}
