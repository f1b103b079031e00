/**
 * What a guest or a disk can do to xenod's memory and life: a console flood behind a client that
 * stopped reading, a state directory whose filesystem is full, and xenod.log and the event table
 * kept bounded (xeno-log-size, xeno-log-count, xeno-event-limit). Real xenod, real guests.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, openSync, closeSync, readFileSync, readdirSync, rmSync, statSync, writeSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import type { Duplex } from 'node:stream';
import { TestDaemon, sleep } from './helpers/harness.js';

const execFileP = promisify(execFile);
const MiB = 1024 * 1024;

function xenodPid(d: TestDaemon): number {
  return Number(readFileSync(path.join(d.stateDir, 'xenod.pid'), 'utf8'));
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : 0;
}

/** A console client that upgrades by hand and then never reads: its data piles up in xenod. */
async function stoppedClient(d: TestDaemon, name: string): Promise<net.Socket> {
  const s = net.createConnection(d.socket);
  await new Promise((r) => s.once('connect', r));
  s.write(`GET /v1/domains/${name}/console HTTP/1.1\r\nHost: xenod\r\nConnection: Upgrade\r\nUpgrade: xeno-console\r\n\r\n`);
  s.pause();
  s.on('error', () => undefined);
  return s;
}

/** A console client that reads everything; counts bytes, keeps the tail. */
async function readingClient(d: TestDaemon, name: string): Promise<{ stream: Duplex; bytes: () => number; tail: () => string }> {
  const stream = await d.client.upgrade(`/v1/domains/${name}/console`, 'xeno-console');
  let bytes = 0;
  let tail = '';
  stream.on('data', (b: Buffer) => {
    bytes += b.length;
    tail = (tail + b.toString('latin1')).slice(-4096);
  });
  stream.on('error', () => undefined);
  return { stream, bytes: () => bytes, tail: () => tail };
}

async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

describe('console flood, bounded logs and events', () => {
  const d = new TestDaemon({ configText: '(xeno-log-size 4k)\n(xeno-log-count 2)\n(xeno-event-limit 6)\n' });
  before(async () => {
    await d.start();
    await d.createGuest('flood');
    await d.waitConsole('flood', /xeno-guest: up/);
  });
  after(() => d.cleanup());

  it('a stopped console client behind a guest printing fast is dropped; xenod stays small and the other client keeps receiving', async () => {
    const pid = xenodPid(d);
    const baseline = rssMiB(pid);
    const slow = await stoppedClient(d, 'flood');
    const fast = await readingClient(d, 'flood');
    await sleep(500);
    fast.stream.write('while :; do echo flood-0123456789-abcdefghijklmnopqrstuvwxyz-0123456789-ABCDEFGHIJKLMNOPQRSTUVWXYZ; done\n');
    let peak = baseline;
    const sample = setInterval(() => (peak = Math.max(peak, rssMiB(pid))), 100);
    try {
      await until('the slow client to be dropped', () => /console client dropped/.test(d.log));
      const atDrop = fast.bytes();
      // Twice what the stopped client was allowed to leave unread (a TCG serial line on a loaded
      // machine is slow: tens of KB/s here; the growth without the bound is the whole flood).
      await until('the fast client to receive 2 MiB more', () => fast.bytes() - atDrop > 2 * MiB, 400_000);
      assert.match(fast.tail(), /flood-0123456789/, 'the reading client keeps receiving the flood');
    } finally {
      clearInterval(sample);
      fast.stream.write('\x03');
    }
    assert.ok(peak - baseline < 100, `xenod RSS went from ${baseline.toFixed(0)} to ${peak.toFixed(0)} MiB`);
    await d.waitConsole('flood', /heartbeat \d+/, 60_000, Math.max(0, d.consoleLog('flood').length - 2000));
    assert.ok(statSync(path.join(d.stateDir, 'console', 'flood.log')).size <= 1024 * 1024, 'the console log stays within console-limit');
    slow.destroy();
    fast.stream.destroy();
    const rows = await d.rows();
    assert.equal(rows.find((r) => r.name === 'flood')?.state, 'running');
  });

  it('xenod.log is rotated by size, keeping xeno-log-count files; the event table keeps xeno-event-limit events', async () => {
    const log = path.join(d.stateDir, 'xenod.log');
    // Each pause/unpause is an event and a log line: enough of them fill the log several times.
    for (let i = 0; i < 300 && !(i >= 6 && existsSync(`${log}.2`) && statSync(log).size > 1024); i++) {
      await d.client.post('/v1/domains/flood/pause');
      await d.client.post('/v1/domains/flood/unpause');
    }
    const { events } = await d.client.get<{ events: Array<{ kind: string; message: string }> }>('/v1/events?limit=1000');
    assert.equal(events.length, 6, 'only the newest xeno-event-limit events are kept');
    assert.equal(events.at(-1)!.kind, 'unpause');
    assert.ok(existsSync(`${log}.1`) && existsSync(`${log}.2`), 'two rotated files');
    assert.ok(!existsSync(`${log}.3`), 'no more than xeno-log-count');
    for (const f of [log, `${log}.1`, `${log}.2`]) assert.ok(statSync(f).size <= 4 * 1024, `${f} is within xeno-log-size`);
    assert.match(readFileSync(log, 'utf8'), /flood unpaused/, 'the newest lines are in xenod.log');
  });
});

describe('a full state directory', () => {
  // A log rotated at every line: each line after the disk is full opens a new, empty file, so the
  // loss does not depend on the slack in the last page of the old one.
  const d = new TestDaemon({ configText: '(xeno-log-size 1)\n(xeno-log-count 400)\n' });
  const logs = () =>
    readdirSync(d.stateDir)
      .filter((f) => /^xenod\.log(\.\d+)?$/.test(f))
      .map((f) => readFileSync(path.join(d.stateDir, f), 'utf8'))
      .join('');
  let mounted = false;
  const filler = () => path.join(d.stateDir, 'filler');
  before(async () => {
    mkdirSync(d.stateDir, { recursive: true });
    await execFileP('mount', ['-t', 'tmpfs', '-o', 'size=8m,mode=0700', 'xeno-test-full', d.stateDir]);
    mounted = true;
    await d.start();
    await d.createGuest('full1');
    await d.waitConsole('full1', /xeno-guest: up/);
  });
  after(async () => {
    await d.stop('SIGKILL').catch(() => undefined);
    await d.cleanup().catch(() => undefined);
    if (mounted) await execFileP('umount', ['-l', d.stateDir]).catch(() => undefined);
    rmSync(d.dir, { recursive: true, force: true });
  });

  it('xenod keeps running and answering, the guest runs; console and log lines are lost and it says so once', async () => {
    const pid = xenodPid(d);
    const fd = openSync(filler(), 'w');
    const chunk = Buffer.alloc(64 * 1024, 1);
    try {
      for (;;) writeSync(fd, chunk);
    } catch (e) {
      assert.equal((e as NodeJS.ErrnoException).code, 'ENOSPC');
    } finally {
      closeSync(fd);
    }
    const reader = await readingClient(d, 'full1');
    // The guest prints (its heartbeat, and a burst) while nothing can be written.
    reader.stream.write('i=0; while [ $i -lt 300 ]; do echo full-disk-line-$i; i=$((i+1)); done\n');
    await until('the burst through the console', () => /full-disk-line-299/.test(reader.tail()));
    const hb = Number([...reader.tail().matchAll(/heartbeat (\d+)/g)].at(-1)?.[1] ?? 0);
    await until('two more heartbeats', () => Number([...reader.tail().matchAll(/heartbeat (\d+)/g)].at(-1)?.[1] ?? 0) >= hb + 2);
    assert.ok((await d.rows()).some((r) => r.name === 'full1' && r.state === 'running'), 'xenod answers, the guest runs');
    assert.ok(!/full-disk-line-299/.test(d.consoleLog('full1')), 'the lines printed on a full disk are not in the console log');
    // Space again: both logs write again, and say once what they lost.
    rmSync(filler());
    await until('the console log to write again', () => /heartbeat/.test(d.consoleLog('full1').slice(-200)) && /full1\.log: writing again/.test(logs()));
    await d.ok(['list']);
    process.kill(pid, 0); // still the same xenod
    const log = logs();
    assert.equal((log.match(/log lines were lost/g) ?? []).length, 1, 'xenod.log says once that it lost lines');
    assert.equal((log.match(/console log .*full1\.log: writing again/g) ?? []).length, 1, 'the console log loss is said once');
    reader.stream.destroy();
  });
});
