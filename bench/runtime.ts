/**
 * Runtime control cost, alternating rounds in one run:
 * - `xeno mem-set` (CLI included) until the balloon reaches its target, versus QMP `balloon` sent
 *   directly to an identical QEMU and polled with query-balloon (512 -> 256 MiB; target: xeno <= raw
 *   + 50 ms);
 * - `xeno pause` / `xeno unpause` end to end versus `node -e 0` (target: <= node + 20 ms).
 * Both guests run in a cgroup of their own with the same weight, so a busy host treats them alike.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { DomainCgroups, cgroupInstanceName, detectCgroups } from '../src/host/cgroups.js';
import { QemuBackend, qemuPaths } from '../src/hypervisor/qemu/qemu-backend.js';
import { QmpClient } from '../src/hypervisor/qemu/qmp.js';
import type { DomainConfig } from '../src/model/domain-config.js';
import { GUEST, REPO, sleep } from '../test/helpers/harness.js';
import { waitSerial } from './guest-load.js';
import { arg, benchDaemon, guestConfig, median, plusRow, rawCgroup, report } from './lib.js';

const MiB = 1024 * 1024;
const HIGH = 512;
const LOW = 256;

const config = (name: string): DomainConfig => guestConfig(name, HIGH);

function timeRun(argv: string[], env: NodeJS.ProcessEnv): number {
  const t0 = performance.now();
  const r = spawnSync(argv[0]!, argv.slice(1), { env, stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0) throw new Error(`${argv.join(' ')} exited ${r.status}: ${String(r.stderr)}`);
  return performance.now() - t0;
}

/** Resolve once `heartbeat N` shows on a serial socket (up to 2 minutes: a busy host starts QEMU slowly). */
const waitHeartbeat = (serialPath: string, n: number) => waitSerial(serialPath, new RegExp(`heartbeat ${n}\\b`));

/** QMP balloon, then query-balloon until the guest is there. */
async function rawBalloon(qmp: QmpClient, mb: number): Promise<number> {
  const t0 = performance.now();
  await qmp.execute('balloon', { value: mb * MiB });
  for (;;) {
    const b = await qmp.execute<{ actual: number }>('query-balloon');
    if (Math.abs(b.actual / MiB - mb) < 1) return performance.now() - t0;
    await sleep(5);
  }
}

export async function run(): Promise<void> {
  const rounds = arg('rounds', 7);
  const d = benchDaemon();
  await d.start();
  let raw: ChildProcess | undefined;
  let qmp: QmpClient | undefined;
  let rawCg: ReturnType<typeof rawCgroup> | undefined;
  try {
    const env = { ...process.env, XENO_SOCKET: d.socket };
    const xeno = (...args: string[]) => [process.execPath, path.join(REPO, 'bin/xeno.cjs'), ...args];
    const backend = await QemuBackend.create({ binary: 'qemu-system-x86_64', accel: 'auto', cacheDir: d.dir });

    // the same guest twice: one under xenod, one as the bare QEMU command line xeno would use
    const cfg = d.writeCfg('bal', `name="bal"\nkernel="${GUEST.kernel}"\nramdisk="${GUEST.ramdisk}"\nextra="quiet"\nmemory=${HIGH}\nvcpus=1\n`);
    await d.ok(['create', cfg]);
    const runDir = path.join(d.dir, 'raw');
    // QEMU makes its sockets in the run dir's qemu/ (qemuPaths): without it the bare QEMU exits at once
    mkdirSync(qemuPaths(runDir).dir, { recursive: true });
    const argv = backend.argv({ domid: 999, uuid: '00000000-0000-4000-8000-000000000999', config: config('raw'), runDir, machineType: backend.caps.machineType, nics: [], logFile: '/dev/null' });
    raw = spawn(backend.binary, argv, { stdio: 'ignore' });
    // The same scheduling for both: xenod puts its guest in a cgroup of its own (weight 256), so the
    // bare QEMU gets one too (on a busy host a group competes as one task, a bare process per thread).
    rawCg = rawCgroup(runDir);
    await rawCg.add(raw.pid!);
    await Promise.all([waitHeartbeat(qemuPaths(runDir).serial, 2), d.waitConsole('bal', /heartbeat 2\b/)]);
    qmp = await QmpClient.connect(qemuPaths(runDir).qmp);

    const memX: number[] = [];
    const memR: number[] = [];
    const memRatio: number[] = [];
    // one warm-up round each (page tables, first inflation)
    timeRun(xeno('mem-set', 'bal', String(LOW)), env);
    timeRun(xeno('mem-set', 'bal', String(HIGH)), env);
    await rawBalloon(qmp, LOW);
    await rawBalloon(qmp, HIGH);
    const memApi: number[] = [];
    // After a balloon change the guest keeps working for a while (free page reporting runs ~2 s
    // later): each timed change starts from a settled guest, the same for both.
    const settle = () => sleep(arg('settle', 3000));
    const both = async (mb: number) => {
      await rawBalloon(qmp!, mb);
      await d.client.post('/v1/domains/bal/mem-set', { memory: mb });
    };
    for (let i = 0; i < rounds; i++) {
      await settle();
      const r = await rawBalloon(qmp, LOW);
      await settle();
      const x = timeRun(xeno('mem-set', 'bal', String(LOW)), env);
      await both(HIGH);
      await settle();
      const t0 = performance.now();
      await d.client.post('/v1/domains/bal/mem-set', { memory: LOW });
      const api = performance.now() - t0;
      await both(HIGH);
      memR.push(r);
      memX.push(x);
      memApi.push(api);
      memRatio.push(x - r);
      process.stderr.write(`mem-set round ${i + 1}/${rounds}: raw ${r.toFixed(1)} ms, xeno ${x.toFixed(1)} ms, API ${api.toFixed(1)} ms\n`);
    }
    report(`mem-set ${HIGH} -> ${LOW} MiB until the balloon is there (${backend.caps.accel}, ${rounds} alternating rounds, medians)`, [
      ['QMP balloon + query-balloon directly (ms)', median(memR)],
      ['xeno mem-set, CLI included (ms)', median(memX)],
      ['xenod API mem-set, no CLI (ms)', median(memApi)],
      ['xeno - raw (median of per-round differences, ms)', median(memRatio)],
      ['target', 'xeno <= raw + 50 ms'],
    ]);

    const pause: number[] = [];
    const unpause: number[] = [];
    const floor: number[] = [];
    timeRun([process.execPath, '-e', '0'], env);
    for (let i = 0; i < rounds * 3; i++) {
      floor.push(timeRun([process.execPath, '-e', '0'], env));
      pause.push(timeRun(xeno('pause', 'bal'), env));
      unpause.push(timeRun(xeno('unpause', 'bal'), env));
    }
    const b = (operation: string) => ({ bench: 'runtime', operation, unit: 'ms', accel: backend.caps.accel });
    // the CLI target: Node's floor + 15 ms + the daemon's own time (here the API's mem-set)
    plusRow(b(`xeno mem-set ${HIGH} -> ${LOW} MiB until reached (raw = QMP balloon; + node -e 0 + 15 ms)`), median(memR), median(memX), Math.round(median(floor) + 15 + Math.max(0, median(memApi) - median(memR))));
    report(`pause / unpause end to end (${rounds * 3} alternating rounds, medians)`, [
      ['node -e 0 (ms)', median(floor)],
      ['xeno pause (ms)', median(pause)],
      ['xeno unpause (ms)', median(unpause)],
      ['pause - node (ms)', median(pause) - median(floor)],
      ['unpause - node (ms)', median(unpause) - median(floor)],
      ['target', '<= node + 20 ms'],
    ]);
  } finally {
    qmp?.close();
    raw?.kill('SIGKILL');
    if (raw) await new Promise((r) => (raw!.exitCode !== null || raw!.signalCode !== null ? r(null) : raw!.once('exit', r)));
    await rawCg?.remove();
    await d.cleanup();
    // the killed daemon never removed its guests' cgroups
    try {
      await new DomainCgroups(detectCgroups(), cgroupInstanceName(d.stateDir)).removeAll();
    } catch {
      /* no cgroups here */
    }
  }
}
