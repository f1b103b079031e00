/**
 * Save and restore: xeno (through xenod's API) versus the same thing done directly on QEMU over QMP,
 * alternating rounds in one run, on a 512 MiB guest.
 *  - raw save:    stop, lift the bandwidth cap, `migrate exec:cat > FILE`, wait completed, fsync.
 *  - raw restore: start QEMU with `-incoming defer`, `migrate-incoming exec:cat FILE`, wait
 *                 completed, cont (QEMU started without the sandbox's spawn=deny, which exec needs).
 *  - xeno save:   POST /v1/domains/DOM/save (pause, header, stream, checksum, fsync, QEMU quits).
 *  - xeno restore: POST /v1/restore until the guest runs (checks, QEMU start, stream, verify, cont).
 * Each side saves and restores the same guest round after round (no reboot in between).
 */
import { closeSync, fsyncSync, openSync, readFileSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { QemuBackend, qemuPaths } from '../src/hypervisor/qemu/qemu-backend.js';
import type { DomainConfig } from '../src/model/domain-config.js';
import type { RestoreResult, SaveResult } from '../src/toolstack/save-restore.js';
import { sleep } from '../test/helpers/harness.js';
import { UNCAPPED_BANDWIDTH } from '../src/hypervisor/qemu/migration-status.js';
import { RawQemu, waitMigrated, type Raw } from './migrate-raw.js';
import { arg, benchDaemon, guestConfig, infoRow, median, ratioRow, report } from './lib.js';

const MEM = arg('mem', 512);

const config = (name: string): DomainConfig => guestConfig(name, MEM);

/** CPU seconds a process has used (all its threads), plus its reaped children's when asked. */
function cpuSeconds(pid: number, children = false): number {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12]) + (children ? Number(f[13]) + Number(f[14]) : 0)) / 100;
  } catch {
    return 0;
  }
}

function fsyncPath(p: string): void {
  const fd = openSync(p, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Raw QEMU as the migrate bench starts it, allowed to spawn `cat` (exec: migration to a file). */
class RawSaver extends RawQemu {
  constructor(backend: QemuBackend, dir: string) {
    super(backend, dir, config('raw'), (argv) => argv.map((a) => (a.startsWith('on,') && a.includes('spawn=deny') ? a.replace(/,spawn=deny/, '') : a)));
  }

  /** stop + migrate to a file + fsync: seconds. */
  async save(r: Raw, file: string): Promise<number> {
    rmSync(file, { force: true });
    const t0 = performance.now();
    await r.qmp.execute('stop');
    await r.qmp.execute('migrate-set-parameters', { 'max-bandwidth': UNCAPPED_BANDWIDTH });
    await r.qmp.execute('migrate', { uri: `exec:cat > ${file}` });
    await waitMigrated(r.qmp, false);
    fsyncPath(file);
    fsyncPath(path.dirname(file));
    return (performance.now() - t0) / 1000;
  }

  /** QEMU start with -incoming defer, load the file, cont: seconds, and the new QEMU. */
  async restore(file: string): Promise<[number, Raw]> {
    const t0 = performance.now();
    const r = await this.start(true);
    await r.qmp.execute('migrate-incoming', { uri: `exec:cat ${file}` });
    await waitMigrated(r.qmp, false);
    await r.qmp.execute('cont');
    return [(performance.now() - t0) / 1000, r];
  }
}

async function waitHeartbeat(serial: string, n: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    let buf = '';
    const deadline = Date.now() + 120_000;
    const attempt = () => {
      const s = net.createConnection(serial);
      s.on('data', (d) => {
        buf += String(d);
        if (new RegExp(`heartbeat ${n}\\b`).test(buf)) {
          s.destroy();
          resolve();
        }
      });
      s.on('error', () => (Date.now() > deadline ? reject(new Error('no serial')) : setTimeout(attempt, 20)));
    };
    attempt();
  });
}

export async function run(): Promise<void> {
  const rounds = arg('rounds', 5);
  const d = benchDaemon();
  await d.start();
  const backend = await QemuBackend.create({ binary: 'qemu-system-x86_64', accel: 'auto', cacheDir: d.dir });
  const rawq = new RawSaver(backend, d.dir);
  let raw: Raw | undefined;
  try {
    // Both guests boot the same way and run a while before the first save.
    raw = await rawq.start(false);
    await d.client.post('/v1/domains', { config: config('bsr') });
    await Promise.all([waitHeartbeat(qemuPaths(raw.runDir).serial, 3), d.waitConsole('bsr', /heartbeat 3\b/, 120_000)]);

    const rs: number[] = [];
    const rr: number[] = [];
    const xs: number[] = [];
    const xr: number[] = [];
    const rSize: number[] = [];
    const xSize: number[] = [];
    const ratioS: number[] = [];
    const ratioR: number[] = [];
    const durable: number[] = [];
    const rCpu: number[] = [];
    const xCpu: number[] = [];
    const xCpuDaemon: number[] = [];
    const qemuSave: number[] = [];
    const launch: number[] = [];
    const load: number[] = [];
    const rawFile = path.join(d.dir, 'raw.mig');
    const xenoFile = path.join(d.dir, 'xeno.save');
    for (let i = 0; i < rounds; i++) {
      let a = 0;
      let b = 0;
      let c = 0;
      let e = 0;
      const rawSide = async () => {
        const pid = raw!.child.pid!;
        const c0 = cpuSeconds(pid, true);
        a = await rawq.save(raw!, rawFile);
        rCpu.push(cpuSeconds(pid, true) - c0);
        rSize.push(statSync(rawFile).size);
        await rawq.stop(raw!);
        const [t, next] = await rawq.restore(rawFile);
        b = t;
        raw = next;
      };
      const xenoSide = async () => {
        rmSync(xenoFile, { force: true });
        const qpid = (await d.client.get<{ pid: number }>('/v1/domains/bsr')).pid;
        const xpid = Number(readFileSync(path.join(d.stateDir, 'xenod.pid'), 'utf8'));
        const q0 = cpuSeconds(qpid);
        const x0 = cpuSeconds(xpid);
        let qLast = q0;
        const sampler = setInterval(() => (qLast = cpuSeconds(qpid) || qLast), 5);
        let t0 = performance.now();
        const sv = await d.client.post<SaveResult>('/v1/domains/bsr/save', { file: xenoFile });
        c = (performance.now() - t0) / 1000;
        clearInterval(sampler);
        xCpu.push(qLast - q0 + (cpuSeconds(xpid) - x0));
        xCpuDaemon.push(cpuSeconds(xpid) - x0);
        xSize.push(sv.size);
        t0 = performance.now();
        const rv = await d.client.post<RestoreResult>('/v1/restore', { file: xenoFile });
        e = (performance.now() - t0) / 1000;
        durable.push(sv.durableMs / 1000);
        qemuSave.push((sv.qemuTotalMs ?? 0) / 1000);
        launch.push(rv.launchMs / 1000);
        load.push(rv.loadMs / 1000);
      };
      // Alternate which side goes first; let the disk settle in between.
      for (const side of i % 2 ? [xenoSide, rawSide] : [rawSide, xenoSide]) {
        await side();
        await sleep(1000);
      }

      rs.push(a);
      rr.push(b);
      xs.push(c);
      xr.push(e);
      ratioS.push(c / a);
      ratioR.push(e / b);
      process.stderr.write(
        `round ${i + 1}/${rounds}: save raw ${a.toFixed(3)} s xeno ${c.toFixed(3)} s | restore raw ${b.toFixed(3)} s xeno ${e.toFixed(3)} s | ` +
          `file raw ${(rSize[i]! / 1048576).toFixed(1)} MiB xeno ${(xSize[i]! / 1048576).toFixed(1)} MiB\n`,
      );
    }
    const b = (operation: string, unit = 'ms') => ({ bench: 'save-restore', operation: `${operation} (${MEM} MiB)`, unit, accel: backend.caps.accel });
    ratioRow(b('save, durable (raw incl. fsync)'), median(rs) * 1000, median(xs) * 1000, 1.2);
    infoRow(b('  xeno save: request -> file durable'), null, median(durable) * 1000);
    infoRow(b('  xeno save: QEMU migration total-time'), null, median(qemuSave) * 1000);
    infoRow(b('  save CPU (raw: QEMU + cat; xeno: QEMU + xenod)', 's'), median(rCpu), median(xCpu));
    ratioRow(b('restore to running'), median(rr) * 1000, median(xr) * 1000, 1.2);
    infoRow(b('  xeno restore: checks + QEMU start'), null, median(launch) * 1000);
    infoRow(b('  xeno restore: stream + verify + cont'), null, median(load) * 1000);
    report(`save / restore of a ${MEM} MiB guest (${backend.caps.accel}, ${rounds} rounds, medians)`, [
      ['raw QEMU save: stop+migrate to file+fsync (s)', median(rs)],
      ['xeno save (API, durable, QEMU gone) (s)', median(xs)],
      ['ratio save xeno/raw (median of per-round)', median(ratioS)],
      ['  xeno: request -> file durable (s)', median(durable)],
      ['  xeno: QEMU migration total-time (s)', median(qemuSave)],
      ['CPU used by a save: raw (QEMU + its cat) (s)', median(rCpu)],
      ['CPU used by a save: xeno (QEMU + xenod) (s)', median(xCpu)],
      ['  of which xenod (s)', median(xCpuDaemon)],
      ['raw QEMU restore to running (s)', median(rr)],
      ['xeno restore to running (API) (s)', median(xr)],
      ['ratio restore xeno/raw (median of per-round)', median(ratioR)],
      ['  xeno: checks + QEMU start (s)', median(launch)],
      ['  xeno: stream + verify + cont (s)', median(load)],
      ['raw file (MiB)', median(rSize) / 1048576],
      ['xeno file (MiB)', median(xSize) / 1048576],
      ['xeno file - raw file (KiB)', (median(xSize) - median(rSize)) / 1024],
    ]);
  } finally {
    if (raw) await rawq.stop(raw).catch(() => undefined);
    await rawq.cgroup.remove();
    await d.cleanup();
  }
}
