/**
 * The fence watchdog as a real process (spawned detached by FenceWatchdogClient), guarding real
 * processes (`sleep`, standing in for QEMUs): it kills them once F has passed since the last renewal
 * it was told of, whether its xenod is connected or gone; a fresh hold keeps them alive while the
 * feeder is connected; a pid whose start time differs (reused) is never killed; a second client
 * reconnects to the same watchdog; stand-down makes it exit.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect } from 'node:net';
import { after, test } from 'node:test';
import { monoMs } from './clock.js';
import { FenceWatchdogClient, procStart, watchdogSocket, type WatchdogSource } from './fence-watchdog.js';

const dir = mkdtempSync(path.join(tmpdir(), 'xeno-fwd-'));
const children: ChildProcess[] = [];
after(() => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function victim(): number {
  const c = spawn('sleep', ['600'], { stdio: 'ignore' });
  children.push(c);
  return c.pid!;
}

async function until(what: string, fn: () => boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await sleep(50);
  }
}

const alive = (pid: number) => procStart(pid) !== undefined;

test('the watchdog fences at F with its feeder connected or gone, holds on a fresh hold, never kills a reused pid', async () => {
  const fenceMs = 1500;
  let last = monoMs();
  let hold = false;
  // the fence rule's bound on the hold: renewed with each check while the peers' reports keep coming
  let holdUntil = (): number => monoMs() + 1000;
  let pids: number[] = [];
  const src: WatchdogSource = { lastRenewal: () => last, renewAge: () => monoMs() - last, now: monoMs, fenceMs, pids: () => pids, holding: () => hold, holdUntil: () => holdUntil() };
  const a = victim();
  pids = [a];
  const renewing = setInterval(() => (last = monoMs()), 200);
  const c1 = new FenceWatchdogClient(dir, src, () => undefined);
  await c1.start();
  await sleep(3 * fenceMs);
  assert.ok(alive(a), 'renewals fresh: nothing killed');

  // renewals stop, a hold is reported by the connected feeder: nothing killed
  clearInterval(renewing);
  hold = true;
  await sleep(3 * fenceMs);
  assert.ok(alive(a), 'a fresh hold keeps it running');

  // no hold any more: killed at F
  hold = false;
  await until('a is killed', () => !alive(a));

  // a hold whose bound is not renewed (the peers' reports stopped coming): killed once it passes
  const a2 = victim();
  pids = [a2];
  hold = true;
  const bound = monoMs() + 1500;
  holdUntil = () => bound;
  await sleep(1000);
  assert.ok(alive(a2), 'within the bound of its hold: not killed');
  await until('a2 is killed past its bound, the hold flag still up', () => !alive(a2));
  hold = false;

  // the feeder gone (a crashed xenod): a second client reconnects to the SAME watchdog
  const log = () => readFileSync(watchdogSocket(dir).replace(/\.sock$/, '.log'), 'utf8');
  const b = victim();
  last = monoMs();
  pids = [b];
  await sleep(500);
  await c1.standDown().catch(() => undefined); // (closes; the "bye" makes it exit: use a fresh one)
  await until('the stood-down watchdog is gone', () => !existsSync(watchdogSocket(dir)));

  const c2 = new FenceWatchdogClient(dir, src, () => undefined);
  await c2.start();
  const renewing2 = setInterval(() => (last = monoMs()), 200);
  await sleep(1000);
  // xenod crashes: no stand-down, the socket just closes
  c2.abandon();
  clearInterval(renewing2);
  await until('b is killed with its xenod gone', () => !alive(b));
  assert.match(log(), /xenod gone: SIGKILL/);

  // a reused pid (its start time differs from what was fed) is never killed
  const d = victim();
  last = monoMs();
  pids = [d];
  const c3 = new FenceWatchdogClient(dir, src, () => undefined);
  await c3.start(); // a watchdog up again (the last one exited after its fence), told of d
  c3.abandon();
  // fed by hand: d with a start time that is not d's
  const raw = connect(watchdogSocket(dir));
  await new Promise((r) => raw.once('connect', r));
  raw.write(JSON.stringify({ renewedAt: 0, fenceMs, pids: [{ pid: d, start: '1' }], hold: false }) + '\n');
  await sleep(3 * fenceMs);
  assert.ok(alive(d), 'a pid with another start time is not the QEMU it was told of');
  raw.end(JSON.stringify({ bye: true }) + '\n');
  await until('the watchdog stood down', () => !existsSync(watchdogSocket(dir)));
});
