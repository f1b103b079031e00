/**
 * CLI cost, rounds alternating in one run, against Node's floor (`node -e 0`) and xenod's own time
 * (the same request sent to the API from this process): `xeno list`, `xeno pause`/`unpause`,
 * `xeno destroy`. Destroy is also compared with raw QEMU (QMP `quit` until the process has exited).
 * Targets (issue 11): each command <= node -e 0 + 15 ms + the daemon's time; destroy's daemon time
 * <= raw quit-to-exit + 10 ms.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { QemuBackend, qemuPaths } from '../src/hypervisor/qemu/qemu-backend.js';
import { QmpClient } from '../src/hypervisor/qemu/qmp.js';
import { REPO, sleep } from '../test/helpers/harness.js';
import { arg, benchDaemon, guestConfig, infoRow, median, plusRow, report } from './lib.js';

function timeRun(argv: string[], env: NodeJS.ProcessEnv): number {
  const t0 = performance.now();
  const r = spawnSync(argv[0]!, argv.slice(1), { env, stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0) throw new Error(`${argv.join(' ')} exited ${r.status}: ${String(r.stderr)}`);
  return performance.now() - t0;
}

const SETTLE_MS = 500;

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

/** A raw QEMU of the same argv, started and told to quit: ms from `quit` sent to the process gone. */
async function rawQuit(backend: QemuBackend, dir: string, i: number): Promise<number> {
  const runDir = path.join(dir, `rawq${i}`);
  mkdirSync(qemuPaths(runDir).dir, { recursive: true });
  const argv = backend.argv({ domid: 800 + i, uuid: '00000000-0000-4000-8000-000000000800', config: guestConfig('rawq', 64), runDir, machineType: backend.caps.machineType, nics: [], logFile: '/dev/null' });
  const child = spawn(backend.binary, argv, { stdio: 'ignore' });
  const qmp = await QmpClient.connect(qemuPaths(runDir).qmp, 15_000);
  await sleep(SETTLE_MS);
  const exited = new Promise((r) => child.once('exit', r));
  const t0 = performance.now();
  await qmp.execute('quit').catch(() => undefined);
  await exited;
  const t = performance.now() - t0;
  qmp.close();
  rmSync(runDir, { recursive: true, force: true });
  return t;
}

export async function run(): Promise<void> {
  const rounds = arg('rounds', 15);
  const d = benchDaemon();
  try {
    await d.start();
    const backend = await QemuBackend.create({ binary: 'qemu-system-x86_64', accel: 'auto', cacheDir: d.dir });
    const accel = backend.caps.accel;
    const env = { ...process.env, XENO_SOCKET: d.socket };
    const xeno = (...args: string[]) => [process.execPath, path.join(REPO, 'bin/xeno.cjs'), ...args];
    const floor = [process.execPath, '-e', '0'];
    await d.client.post('/v1/domains', { config: guestConfig('c0', 128) });
    timeRun(xeno('list'), env);
    timeRun(floor, env);
    const t: Record<string, number[]> = { floor: [], list: [], listApi: [], pause: [], pauseApi: [], unpause: [], unpauseApi: [] };
    for (let i = 0; i < rounds; i++) {
      t.floor!.push(timeRun(floor, env));
      t.list!.push(timeRun(xeno('list'), env));
      t.listApi!.push(await timed(() => d.client.get('/v1/domains')));
      t.pause!.push(timeRun(xeno('pause', 'c0'), env));
      t.unpause!.push(timeRun(xeno('unpause', 'c0'), env));
      t.pauseApi!.push(await timed(() => d.client.post('/v1/domains/c0/pause')));
      t.unpauseApi!.push(await timed(() => d.client.post('/v1/domains/c0/unpause')));
    }
    // destroy: a fresh guest each time, paused as the raw QEMU is (-S, never cont): the same QMP quit, and no
    // booting guest taking the CPU from the CLI that destroys it. Each waits SETTLE_MS after its create: a
    // QEMU keeps setting itself up for a while after its QMP answers (and create returns), and that work
    // took the CPU from the CLI's own start (+10 ms), which node -e 0 never competes with.
    const destroyRounds = Math.max(3, Math.round(rounds / 3));
    const rawQ: number[] = [];
    const dApi: number[] = [];
    const dCli: number[] = [];
    for (let i = 0; i < destroyRounds; i++) {
      rawQ.push(await rawQuit(backend, d.dir, i));
      await d.client.post('/v1/domains', { config: guestConfig(`da${i}`, 64), paused: true });
      await sleep(SETTLE_MS);
      dApi.push(await timed(() => d.client.post(`/v1/domains/da${i}/destroy`)));
      await d.client.post('/v1/domains', { config: guestConfig(`dc${i}`, 64), paused: true });
      await sleep(SETTLE_MS);
      dCli.push(timeRun(xeno('destroy', `dc${i}`), env));
    }
    const m = (k: string) => median(t[k]!);
    const b = (operation: string) => ({ bench: 'cli', operation, unit: 'ms', accel });
    const node = m('floor');
    plusRow(b('xeno list (raw = node -e 0; + 15 ms + API time)'), node, m('list'), Math.round((15 + m('listApi')) * 10) / 10);
    plusRow(b('xeno pause (raw = node -e 0; + 15 ms + API time)'), node, m('pause'), Math.round((15 + m('pauseApi')) * 10) / 10);
    plusRow(b('xeno unpause (raw = node -e 0; + 15 ms + API time)'), node, m('unpause'), Math.round((15 + m('unpauseApi')) * 10) / 10);
    plusRow(b('destroy, API (raw = QMP quit until exit)'), median(rawQ), median(dApi), 10);
    plusRow(b('xeno destroy (raw = node -e 0; + 15 ms + API time)'), node, median(dCli), Math.round((15 + median(dApi)) * 10) / 10);
    infoRow(b('  API time: list'), null, m('listApi'));
    report(`CLI end to end vs node -e 0 and the API (${accel}, ${rounds} alternating rounds, destroy ${destroyRounds}, medians)`, [
      ['node -e 0 (ms)', node],
      ['xeno list / API (ms)', `${m('list').toFixed(1)} / ${m('listApi').toFixed(1)}`],
      ['xeno pause / API (ms)', `${m('pause').toFixed(1)} / ${m('pauseApi').toFixed(1)}`],
      ['xeno unpause / API (ms)', `${m('unpause').toFixed(1)} / ${m('unpauseApi').toFixed(1)}`],
      ['raw QMP quit -> exit (ms)', median(rawQ)],
      ['xeno destroy CLI / API (ms)', `${median(dCli).toFixed(1)} / ${median(dApi).toFixed(1)}`],
    ]);
  } finally {
    await d.cleanup();
  }
}
