/**
 * Toolstack overhead at create: `xeno create` to the guest's first heartbeat, versus the same QEMU
 * command line started directly, alternating rounds in one run. Also: how soon QEMU is spawned after
 * the create request reaches xenod.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { QemuBackend, qemuPaths } from '../src/hypervisor/qemu/qemu-backend.js';
import type { CreateResponse } from '../src/model/api.js';
import type { DomainConfig } from '../src/model/domain-config.js';
import { GUEST, TestDaemon } from '../test/helpers/harness.js';
import { waitSerial } from './guest-load.js';
import { arg, benchDaemon, guestConfig, infoRow, median, report } from './lib.js';

const config = (name: string): DomainConfig => guestConfig(name);

/** Resolve when `heartbeat 1` shows on a serial socket; returns performance.now() then. */
async function firstHeartbeat(serialPath: string): Promise<number> {
  await waitSerial(serialPath, /heartbeat 1\b/);
  return performance.now();
}

async function rawRound(backend: QemuBackend, dir: string, i: number): Promise<number> {
  const runDir = path.join(dir, `raw${i}`);
  mkdirSync(qemuPaths(runDir).dir, { recursive: true });
  const argv = backend.argv({ domid: 1000 + i, uuid: '00000000-0000-4000-8000-00000000000' + (i % 10), config: config(`raw${i}`), runDir, machineType: backend.caps.machineType, nics: [], logFile: '/dev/null' });
  const t0 = performance.now();
  const child = spawn(backend.binary, argv, { stdio: 'ignore' });
  const t1 = await firstHeartbeat(qemuPaths(runDir).serial);
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  rmSync(runDir, { recursive: true, force: true });
  return (t1 - t0) / 1000;
}

async function xenoRound(d: TestDaemon, i: number): Promise<number> {
  const name = `b${i}`;
  const cfg = d.writeCfg(name, `name="${name}"\nkernel="${GUEST.kernel}"\nramdisk="${GUEST.ramdisk}"\nextra="quiet"\nmemory=128\nvcpus=1\n`);
  const t0 = performance.now();
  const r = await d.xeno(['create', cfg]);
  if (r.code !== 0) throw new Error(r.stderr);
  const stream = await d.client.upgrade(`/v1/domains/${name}/console?history=1`, 'xeno-console');
  const t1 = await new Promise<number>((resolve) => {
    let buf = '';
    stream.on('data', (c: Buffer) => {
      buf += String(c);
      if (buf.includes('heartbeat 1')) resolve(performance.now());
    });
  });
  stream.destroy();
  await d.ok(['destroy', name]);
  return (t1 - t0) / 1000;
}

export async function run(): Promise<void> {
  const rounds = arg('rounds', 5);
  const d = benchDaemon();
  await d.start();
  const backend = await QemuBackend.create({ binary: 'qemu-system-x86_64', accel: 'auto', cacheDir: d.dir });
  try {
    const raw: number[] = [];
    const xeno: number[] = [];
    const ratios: number[] = [];
    const spawn: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const a = await rawRound(backend, d.dir, i);
      const cfgName = `s${i}`;
      // the spawn latency from the API's own timings
      const resp = await d.client.post<CreateResponse>('/v1/domains', { config: config(cfgName) });
      spawn.push(resp.timings!.requestToSpawnMs);
      await d.client.post(`/v1/domains/${cfgName}/destroy`);
      const b = await xenoRound(d, i);
      raw.push(a);
      xeno.push(b);
      ratios.push(b / a);
      process.stderr.write(`round ${i + 1}/${rounds}: raw ${a.toFixed(3)} s, xeno ${b.toFixed(3)} s, spawn ${spawn[i]!.toFixed(1)} ms\n`);
    }
    const b = (operation: string, unit = 'ms') => ({ bench: 'create', operation, unit, accel: backend.caps.accel });
    infoRow(b('xeno create (CLI) to first heartbeat (raw = QEMU started directly)'), median(raw) * 1000, median(xeno) * 1000);
    infoRow(b('  request reaches xenod -> QEMU spawned'), null, median(spawn));
    report(`create to first heartbeat (${backend.caps.accel}, ${rounds} rounds, medians)`, [
      ['raw QEMU (s)', median(raw)],
      ['xeno create, CLI included (s)', median(xeno)],
      ['ratio xeno/raw (median of per-round ratios)', median(ratios)],
      ['request reaches xenod -> QEMU spawned (ms)', median(spawn)],
    ]);
  } finally {
    await d.cleanup();
  }
}
