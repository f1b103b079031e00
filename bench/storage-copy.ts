/**
 * Migration without shared storage: xeno (`migrate --copy-storage` between two xenods on this
 * machine) versus raw QEMU driven with the same QMP sequence (target: -incoming defer with its own
 * empty disk, TLS-PSK creds, nbd-server-start + block-export-add; source: nbd blockdev over TLS,
 * blockdev-mirror, all READY, migrate, completed, block-job-cancel; target: exports removed,
 * cont), alternating rounds in one run. The disk is raw, DISK MiB of random bytes (default 128).
 * Reported: wall time and QEMU's downtime, each side's median and the ratio xeno/raw.
 *   npm run bench -- storage            (after bench/storage.ts)
 *   node dist/bench/storage-copy.js [--rounds N] [--disk MiB] [--mem MiB]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { QemuBackend, qemuPaths } from '../src/hypervisor/qemu/qemu-backend.js';
import { QmpClient } from '../src/hypervisor/qemu/qmp.js';
import { UNCAPPED_BANDWIDTH } from '../src/hypervisor/qemu/migration-status.js';
import type { MigrateResult } from '../src/migration/client.js';
import type { DomainConfig } from '../src/model/domain-config.js';
import { TestDaemon, freePort, sleep } from '../test/helpers/harness.js';
import { arg, guestConfig, median, report } from './lib.js';

const MiB = 1024 * 1024;

interface Q {
  status?: string;
  downtime?: number;
  'total-time'?: number;
  'error-desc'?: string;
  'socket-address'?: Array<{ port?: string | number }>;
}

interface Job {
  id: string;
  status: string;
  error?: string;
}

async function waitMigrated(qmp: QmpClient): Promise<Q> {
  for (;;) {
    const q = await qmp.execute<Q>('query-migrate');
    if (q.status === 'completed') {
      for (let i = 0; i < 50 && q.downtime === undefined; i++) Object.assign(q, await qmp.execute<Q>('query-migrate'));
      return q;
    }
    if (q.status === 'failed' || q.status === 'cancelled') throw new Error(`raw migration ${q.status}: ${q['error-desc'] ?? ''}`);
    await sleep(5);
  }
}

async function waitJob(qmp: QmpClient, id: string, until: 'ready' | 'concluded'): Promise<void> {
  for (;;) {
    const j = (await qmp.execute<Job[]>('query-jobs')).find((x) => x.id === id);
    if (!j) throw new Error(`job ${id} vanished`);
    if (j.status === until) return;
    if (j.status === 'concluded') throw new Error(`job ${id} ended: ${j.error ?? 'before ready'}`);
    await sleep(100); // xeno polls its mirrors every 100 ms too (each query takes QEMU's big lock)
  }
}

interface Raw {
  child: ChildProcess;
  qmp: QmpClient;
  runDir: string;
  disk: string;
}

/** Two raw QEMUs per round, the argv xeno would use, the disk moving from one file to the next. */
class RawQemu {
  private n = 0;
  constructor(
    private readonly backend: QemuBackend,
    private readonly dir: string,
    private readonly pskDir: string,
    private readonly mem: number,
  ) {}

  async start(disk: string, incoming: boolean): Promise<Raw> {
    const runDir = path.join(this.dir, `raw${this.n++}`);
    mkdirSync(qemuPaths(runDir).dir, { recursive: true });
    const config: DomainConfig = { ...guestConfig('rawsc', this.mem), disks: [{ target: disk, format: 'raw', vdev: 'xvda', access: 'rw', devtype: 'disk' }] };
    const argv = this.backend.argv({
      domid: 900 + this.n, uuid: '00000000-0000-4000-8000-000000000901', config, runDir,
      machineType: this.backend.caps.machineType, nics: [], incoming, tlsPskDir: incoming ? this.pskDir : undefined, logFile: '/dev/null',
    });
    const child = spawn(this.backend.binary, argv, { stdio: 'ignore' });
    const qmp = await QmpClient.connect(qemuPaths(runDir).qmp, 15_000);
    if (incoming) await qmp.execute('migrate-set-parameters', { 'tls-creds': 'xenomig0' });
    else await this.asClient(qmp);
    return { child, qmp, runDir, disk };
  }

  private async asClient(qmp: QmpClient): Promise<void> {
    await qmp.execute('object-del', { id: 'xenomig0' }).catch(() => undefined);
    await qmp.execute('object-add', { 'qom-type': 'tls-creds-psk', id: 'xenomig0', endpoint: 'client', dir: this.pskDir, username: 'xeno' });
    await qmp.execute('migrate-set-parameters', { 'tls-creds': 'xenomig0', 'max-bandwidth': UNCAPPED_BANDWIDTH });
  }

  async stop(r: Raw): Promise<void> {
    await r.qmp.execute('quit').catch(() => undefined);
    if (r.child.exitCode === null) await new Promise((res) => r.child.once('exit', res));
    rmSync(r.runDir, { recursive: true, force: true });
  }

  /** The whole copy-storage recipe into a fresh QEMU and disk: [seconds, downtime ms, the new QEMU]. */
  async migrate(src: Raw, diskMib: number): Promise<[number, number, Raw]> {
    const t0 = performance.now();
    const disk = path.join(this.dir, `rawdisk${this.n}.raw`);
    writeFileSync(disk, '');
    await import('node:fs/promises').then((fs) => fs.truncate(disk, diskMib * MiB));
    const dst = await this.start(disk, true);
    const nbdPort = await freePort();
    await dst.qmp.execute('nbd-server-start', { addr: { type: 'inet', data: { host: '127.0.0.1', port: String(nbdPort) } }, 'tls-creds': 'xenomig0' });
    await dst.qmp.execute('block-export-add', { type: 'nbd', id: 'exp0', 'node-name': 'disk-xvda', name: 'xvda', writable: true });
    await dst.qmp.execute('migrate-incoming', { uri: 'tcp:127.0.0.1:0' });
    let port = 0;
    while (!port) {
      port = Number((await dst.qmp.execute<Q>('query-migrate'))['socket-address']?.[0]?.port);
      if (!port) await sleep(5);
    }
    await src.qmp.execute('blockdev-add', { driver: 'nbd', 'node-name': 'nbd0', export: 'xvda', 'tls-creds': 'xenomig0', server: { type: 'inet', host: '127.0.0.1', port: String(nbdPort) } });
    await src.qmp.execute('blockdev-mirror', { 'job-id': 'm0', device: 'disk-xvda', target: 'nbd0', sync: 'full', 'auto-dismiss': false });
    await waitJob(src.qmp, 'm0', 'ready');
    await src.qmp.execute('migrate', { uri: `tcp:127.0.0.1:${port}` });
    const q = await waitMigrated(src.qmp);
    await src.qmp.execute('block-job-cancel', { device: 'm0' });
    await waitJob(src.qmp, 'm0', 'concluded');
    await src.qmp.execute('job-dismiss', { id: 'm0' });
    await src.qmp.execute('blockdev-del', { 'node-name': 'nbd0' });
    await waitMigrated(dst.qmp);
    await dst.qmp.execute('block-export-del', { id: 'exp0' }).catch(() => undefined);
    await dst.qmp.execute('nbd-server-stop');
    await dst.qmp.execute('cont');
    const t = (performance.now() - t0) / 1000;
    await this.stop(src);
    rmSync(src.disk, { force: true });
    await this.asClient(dst.qmp);
    return [t, q.downtime ?? 0, dst];
  }
}

export async function run(): Promise<void> {
  const rounds = arg('rounds', 3);
  const diskMib = arg('disk', 128);
  const mem = arg('mem', 128);
  const keyDir = path.join('/tmp', `xeno-bench-sc-${process.pid}`);
  mkdirSync(keyDir, { recursive: true, mode: 0o700 });
  const key = randomBytes(32).toString('hex');
  const keyFile = path.join(keyDir, 'relocation.psk');
  writeFileSync(keyFile, key + '\n', { mode: 0o600 });
  const pskDir = path.join(keyDir, 'psk');
  mkdirSync(pskDir, { mode: 0o750 });
  writeFileSync(path.join(pskDir, 'keys.psk'), `xeno:${key}\n`, { mode: 0o644 });
  const ports = [await freePort(), await freePort()];
  const cfg = (port: number) => `(xend-relocation-server yes)\n(xend-relocation-port ${port})\n(xend-relocation-address '127.0.0.1')\n(xeno-relocation-key-file '${keyFile}')\n`;
  const ends = [new TestDaemon({ configText: cfg(ports[0]!) }), new TestDaemon({ configText: cfg(ports[1]!) })];
  await Promise.all(ends.map((d) => d.start()));
  const backend = await QemuBackend.create({ binary: 'qemu-system-x86_64', accel: 'auto', cacheDir: ends[0]!.dir });
  const rawq = new RawQemu(backend, ends[0]!.dir, pskDir, mem);
  const data = randomBytes(diskMib * MiB);
  const rawDisk = path.join(ends[0]!.dir, 'rawdisk-first.raw');
  writeFileSync(rawDisk, data);
  const xenoDisk = path.join(ends[0]!.dir, 'bsc.raw');
  writeFileSync(xenoDisk, data);
  let raw: Raw | undefined;
  try {
    raw = await rawq.start(rawDisk, false);
    await ends[0]!.client.post('/v1/domains', { config: { ...guestConfig('bsc', mem), disks: [{ target: xenoDisk, format: 'raw', vdev: 'xvda', access: 'rw', devtype: 'disk' }] } });
    await sleep(15_000); // both guests boot and settle
    const rT: number[] = [];
    const rDown: number[] = [];
    const xT: number[] = [];
    const xDown: number[] = [];
    const ratioT: number[] = [];
    const ratioD: number[] = [];
    let at = 0;
    for (let i = 0; i < rounds; i++) {
      let a = 0;
      let c = 0;
      const rawSide = async () => {
        const [t, down, next] = await rawq.migrate(raw!, diskMib);
        raw = next;
        a = t;
        rDown.push(down);
      };
      const xenoSide = async () => {
        const from = ends[at]!;
        const before = (await from.client.get<{ config: { disks: Array<{ target: string }> } }>('/v1/domains/bsc')).config.disks[0]!.target;
        const t0 = performance.now();
        const r = await from.client.post<MigrateResult>('/v1/domains/bsc/migrate', { host: '127.0.0.1', port: ports[1 - at], live: true, copyStorage: true });
        c = (performance.now() - t0) / 1000;
        rmSync(before, { force: true }); // the copy left behind (the next round back makes a new one)
        at = 1 - at;
        xDown.push(r.downtimeMs ?? 0);
      };
      for (const side of i % 2 ? [xenoSide, rawSide] : [rawSide, xenoSide]) {
        await side();
        await sleep(1000);
      }
      rT.push(a);
      xT.push(c);
      ratioT.push(c / a);
      ratioD.push(xDown[i]! / Math.max(1, rDown[i]!));
      process.stderr.write(`round ${i + 1}/${rounds}: raw ${a.toFixed(2)} s (downtime ${rDown[i]} ms) | xeno ${c.toFixed(2)} s (downtime ${xDown[i]} ms)\n`);
    }
    report(`live migration with --copy-storage of a ${mem} MiB guest with a ${diskMib} MiB raw disk, TLS-PSK, one machine (${backend.caps.accel}, ${rounds} rounds, medians)`, [
      ['raw QEMU: total time (s)', median(rT)],
      ['xeno: migrate --copy-storage total time (s)', median(xT)],
      ['ratio total time xeno/raw', median(ratioT)],
      ['raw QEMU downtime (ms)', median(rDown)],
      ['xeno QEMU downtime (ms)', median(xDown)],
      ['ratio downtime xeno/raw', median(ratioD)],
    ]);
  } finally {
    if (raw) await rawq.stop(raw).catch(() => undefined);
    await Promise.all(ends.map((d) => d.cleanup()));
    rmSync(keyDir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await run();
