/**
 * The sampler's cost per tick with N guests (`npm run bench -- sampler [--guests 1,4,8] [--rounds 20]`):
 * one xenod with its metrics endpoint on loopback; for each N, the last tick's duration
 * (`xeno_sampler_tick_duration_seconds`, QMP round trips included) read once a second, median and
 * max, and xenod's CPU time per second while it only samples (no request but the scrape).
 */
import { readFileSync } from 'node:fs';
import { TestDaemon, sleep } from '../test/helpers/harness.js';
import { capRow, hostAccel, infoRow, median, report } from './lib.js';

const PORT = 19101 + (process.pid % 1000);

function list(name: string, def: number[]): number[] {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]!.split(',').map(Number) : def;
}

async function tickSeconds(): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${PORT}/metrics`)).text();
  return Number(/^xeno_sampler_tick_duration_seconds (\S+)$/m.exec(text)![1]);
}

function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

export async function run(): Promise<void> {
  const counts = list('guests', [1, 4, 8]);
  const rounds = list('rounds', [20])[0]!;
  // the host's accelerator, as xenod probes it (no --accel: a KVM host runs it unchanged)
  const d = new TestDaemon({ args: ['--metrics', `127.0.0.1:${PORT}`] });
  try {
    await d.start();
    const accel = await hostAccel(d.dir);
    const pid = Number(readFileSync(`${d.stateDir}/xenod.pid`, 'utf8'));
    let made = 0;
    for (const n of counts) {
      while (made < n) await d.createGuest(`s${made++}`);
      await sleep(3000);
      const ticks: number[] = [];
      const c0 = cpuSeconds(pid);
      const t0 = Date.now();
      for (let i = 0; i < rounds; i++) {
        await sleep(1000);
        ticks.push((await tickSeconds()) * 1000);
      }
      const cpuPct = ((cpuSeconds(pid) - c0) / ((Date.now() - t0) / 1000)) * 100;
      const b = (operation: string, unit: string) => ({ bench: 'sampler', operation: `${operation}, ${n} guest(s)`, unit, accel });
      infoRow(b('tick, median', 'ms'), null, median(ticks));
      capRow(b('tick, max (bounded by the 300 ms QMP timeout)', 'ms'), Math.max(...ticks), 300);
      infoRow(b('xenod CPU while sampling', '%'), null, cpuPct);
      report(`sampler, ${n} guest(s), ${rounds} ticks (${accel})`, [
        ['tick ms, median', median(ticks)],
        ['tick ms, max', Math.max(...ticks)],
        ['xenod CPU % while sampling', cpuPct],
      ]);
    }
  } finally {
    await d.cleanup();
  }
}
