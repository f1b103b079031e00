import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { RotatingLogFile } from '../common/logger.js';
import { ConsoleHub, type ConsoleSink } from './console-hub.js';
import { StateStore } from './store.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A fake QEMU serial socket: a real Unix socket server the hub connects to. */
async function serialServer(dir: string): Promise<{ sock: string; guest: () => net.Socket; received: Buffer[]; close: () => void }> {
  const sock = path.join(dir, 'serial.sock');
  const received: Buffer[] = [];
  let guest: net.Socket | undefined;
  const server = net.createServer((s) => {
    guest = s;
    s.on('data', (d) => received.push(d));
  });
  await new Promise<void>((r) => server.listen(sock, r));
  return { sock, guest: () => guest!, received, close: () => server.close() };
}

function collector(): ConsoleSink & { chunks: Buffer[] } {
  const chunks: Buffer[] = [];
  return { chunks, writableLength: 0, write: (d) => void chunks.push(Buffer.from(d)), drop: () => undefined };
}

test('a console is fanned out to every client, typed input reaches the guest, and the log stays bounded', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'xeno-hub-'));
  const srv = await serialServer(dir);
  const hub = new ConsoleHub(srv.sock, path.join(dir, 'console.log'), 4096);
  try {
    await new Promise((r) => hub.once('connected', r));
    const a = collector();
    const b = collector();
    hub.attach(a);
    const detachB = hub.attach(b);
    const line = (i: number) => `heartbeat ${i}\n`;
    for (let i = 1; i <= 1000; i++) srv.guest().write(line(i));
    await sleep(200);
    await hub.flushed();
    assert.match(Buffer.concat(a.chunks).toString(), /heartbeat 1000\n$/);
    assert.equal(Buffer.concat(a.chunks).toString(), Buffer.concat(b.chunks).toString());
    assert.ok(statSync(path.join(dir, 'console.log')).size <= 4096, 'the log is bounded by console-limit');
    assert.match(readFileSync(path.join(dir, 'console.log'), 'utf8'), /heartbeat 1000\n$/, 'the newest output is kept');
    detachB();
    hub.input(Buffer.from('ls\n'));
    await sleep(50);
    assert.equal(Buffer.concat(srv.received).toString(), 'ls\n');
  } finally {
    hub.close();
    srv.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a client that stops reading is dropped with a message; the other client and the guest go on', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'xeno-hub-'));
  const srv = await serialServer(dir);
  const reports: string[] = [];
  const hub = new ConsoleHub(srv.sock, path.join(dir, 'console.log'), 64 * 1024, { report: (m) => reports.push(m), clientBufferBytes: 256 * 1024 });
  // Real socket pairs: the slow client's end is never read (paused), the fast one reads everything.
  const pair = async (): Promise<{ server: net.Socket; client: net.Socket }> => {
    const p = path.join(dir, `c${Math.random().toString(36).slice(2)}.sock`);
    let server!: net.Socket;
    const l = net.createServer((s) => (server = s));
    await new Promise<void>((r) => l.listen(p, r));
    const client = net.createConnection(p);
    await new Promise((r) => client.once('connect', r));
    while (!server) await sleep(5);
    l.close();
    return { server, client };
  };
  const sinkOf = (s: net.Socket): ConsoleSink => ({
    write: (d) => void s.write(d),
    get writableLength() {
      return s.writableLength;
    },
    drop: (m) => {
      s.end(m);
      setTimeout(() => s.destroy(), 500);
    },
  });
  try {
    await new Promise((r) => hub.once('connected', r));
    const slow = await pair();
    const fast = await pair();
    slow.client.pause();
    let fastBytes = 0;
    fast.client.on('data', (d: Buffer) => (fastBytes += d.length));
    const slowClosed = new Promise((r) => slow.server.once('close', r));
    hub.attach(sinkOf(slow.server));
    hub.attach(sinkOf(fast.server));
    const chunk = Buffer.alloc(64 * 1024, 'x');
    const total = 32 * 1024 * 1024;
    // The guest writes 32 MiB as fast as the socket takes it: it is never held back.
    for (let sent = 0; sent < total; sent += chunk.length) {
      if (!srv.guest().write(chunk)) await new Promise((r) => srv.guest().once('drain', r));
    }
    while (fastBytes < total) await sleep(20);
    await slowClosed;
    assert.equal(hub.clientCount, 1, 'the slow client was dropped, the fast one stays');
    assert.equal(fastBytes, total, 'the fast client got every byte');
    assert.ok(reports.some((m) => /console client dropped/.test(m)), reports.join('\n'));
    await hub.flushed();
    assert.ok(statSync(path.join(dir, 'console.log')).size <= 64 * 1024);
    slow.client.destroy();
    fast.client.destroy();
  } finally {
    hub.close();
    srv.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a console log that cannot be written (ENOSPC: /dev/full) costs log lines only, said once', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'xeno-hub-'));
  const srv = await serialServer(dir);
  const reports: string[] = [];
  const hub = new ConsoleHub(srv.sock, '/dev/full', 1024 * 1024, { report: (m) => reports.push(m) });
  try {
    await new Promise((r) => hub.once('connected', r));
    const a = collector();
    hub.attach(a);
    for (let i = 1; i <= 200; i++) srv.guest().write(`line ${i}\n`);
    while (!/line 200\n$/.test(Buffer.concat(a.chunks).toString())) await sleep(10);
    await hub.flushed();
    assert.ok(hub.lostBytes > 0, 'the lost output is counted');
    assert.equal(reports.filter((m) => /output is being lost/.test(m)).length, 1, reports.join('\n'));
  } finally {
    hub.close();
    srv.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the event table keeps the newest xeno-event-limit events', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'xeno-store-'));
  try {
    const s = new StateStore(path.join(dir, 'x.db'), { eventLimit: 10 });
    for (let i = 1; i <= 50; i++) assert.equal(s.addEvent(null, null, 'test', `event ${i}`), true);
    const ev = s.events(1000);
    assert.equal(ev.length, 10);
    assert.deepEqual(ev.map((e) => e.message), Array.from({ length: 10 }, (_, i) => `event ${41 + i}`));
    s.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('xenod.log rotates by size and keeps xeno-log-count files; a failing write never throws', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'xeno-log-'));
  try {
    const f = path.join(dir, 'xenod.log');
    const log = new RotatingLogFile(f, { maxBytes: 1000, keep: 2 });
    for (let i = 0; i < 100; i++) log.write(`${JSON.stringify({ msg: `line ${i}`, pad: 'x'.repeat(60) })}\n`);
    log.close();
    assert.ok(existsSync(`${f}.1`) && existsSync(`${f}.2`) && !existsSync(`${f}.3`), 'two rotated files kept');
    for (const p of [f, `${f}.1`, `${f}.2`]) assert.ok(statSync(p).size <= 1000, `${p} within the size`);
    assert.match(readFileSync(f, 'utf8'), /line 99/);
    const complaints: string[] = [];
    const full = new RotatingLogFile('/dev/full', { maxBytes: 0, keep: 0 }, (m) => complaints.push(m));
    for (let i = 0; i < 5; i++) full.write('a line\n');
    full.close();
    assert.equal(full.lostLines, 5);
    assert.equal(complaints.length, 1, 'said once');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('domain ids are handed out once, in order, and survive a reopen of the store', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'xeno-store-'));
  try {
    const file = path.join(dir, 'x.db');
    let s = new StateStore(file);
    assert.deepEqual([s.allocateDomid(), s.allocateDomid()], [1, 2]);
    s.close();
    s = new StateStore(file);
    assert.equal(s.allocateDomid(), 3);
    s.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
