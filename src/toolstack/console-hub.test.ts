import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { ConsoleHub } from './console-hub.js';
import { StateStore } from './store.js';

test('a console is fanned out to every client, typed input reaches the guest, and the log stays bounded', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'xeno-hub-'));
  const sock = path.join(dir, 'serial.sock');
  const received: Buffer[] = [];
  let guest!: net.Socket;
  const server = net.createServer((s) => {
    guest = s;
    s.on('data', (d) => received.push(d));
  });
  await new Promise<void>((r) => server.listen(sock, r));
  const hub = new ConsoleHub(sock, path.join(dir, 'console.log'), 4096);
  try {
    await new Promise((r) => hub.once('connected', r));
    const a: Buffer[] = [];
    const b: Buffer[] = [];
    hub.attach({ write: (d) => a.push(d) });
    const detachB = hub.attach({ write: (d) => b.push(d) });
    const line = (i: number) => `heartbeat ${i}\n`;
    for (let i = 1; i <= 1000; i++) guest.write(line(i));
    await new Promise((r) => setTimeout(r, 200));
    assert.match(Buffer.concat(a).toString(), /heartbeat 1000\n$/);
    assert.equal(Buffer.concat(a).toString(), Buffer.concat(b).toString());
    assert.ok(statSync(path.join(dir, 'console.log')).size <= 4096, 'the log is bounded by console-limit');
    assert.match(readFileSync(path.join(dir, 'console.log'), 'utf8'), /heartbeat 1000\n$/, 'the newest output is kept');
    detachB();
    const bBefore = Buffer.concat(b).length;
    guest.write('after-detach\n');
    // A still attached receives it: once it has, B had its chance too
    for (let i = 0; i < 100 && !/after-detach\n$/.test(Buffer.concat(a).toString()); i++) await new Promise((r) => setTimeout(r, 20));
    assert.match(Buffer.concat(a).toString(), /after-detach\n$/);
    assert.equal(Buffer.concat(b).length, bBefore, 'a detached client receives nothing more');
    hub.input(Buffer.from('ls\n'));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(Buffer.concat(received).toString(), 'ls\n');
  } finally {
    hub.close();
    server.close();
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
