/**
 * CLI cost: `xeno list` end to end versus `node -e 0` (Node's start-up is the floor), alternating,
 * and xenod's resident memory with 10 guests.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { REPO, TestDaemon, sleep } from '../test/helpers/harness.js';
import { arg, guestConfig, median, report } from './lib.js';

function timeRun(argv: string[], env: NodeJS.ProcessEnv): number {
  const t0 = performance.now();
  const r = spawnSync(argv[0]!, argv.slice(1), { env, stdio: 'ignore' });
  if (r.status !== 0) throw new Error(`${argv.join(' ')} exited ${r.status}`);
  return performance.now() - t0;
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

export async function run(): Promise<void> {
  const rounds = arg('rounds', 20);
  const guests = arg('guests', 10);
  const d = new TestDaemon();
  await d.start();
  try {
    const env = { ...process.env, XENO_SOCKET: d.socket };
    const xeno = [process.execPath, path.join(REPO, 'bin/xeno.cjs'), 'list'];
    const floor = [process.execPath, '-e', '0'];
    timeRun(xeno, env);
    timeRun(floor, env);
    const a: number[] = [];
    const b: number[] = [];
    const ratios: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const x = timeRun(xeno, env);
      const n = timeRun(floor, env);
      a.push(x);
      b.push(n);
      ratios.push(x / n);
    }
    report(`xeno list end to end vs node -e 0 (${rounds} alternating rounds, medians)`, [
      ['xeno list (ms)', median(a)],
      ['node -e 0 (ms)', median(b)],
      ['ratio', median(ratios)],
    ]);

    const pid = Number(readFileSync(path.join(d.stateDir, 'xenod.pid'), 'utf8'));
    const idle = rssMb(pid);
    for (let i = 0; i < guests; i++) {
      await d.client.post('/v1/domains', { config: guestConfig(`m${i}`, 64) });
    }
    await sleep(15_000); // let their consoles talk
    for (let i = 0; i < 5; i++) await d.ok(['list']);
    const busy = rssMb(pid);
    report(`xenod resident memory`, [
      ['idle, no guest (MB)', idle],
      [`with ${guests} guests running (MB)`, busy],
    ]);
  } finally {
    await d.cleanup();
  }
}
