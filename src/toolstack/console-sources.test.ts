import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { ConsoleHub, consoleOfCmdline, type ConsoleInput } from './console-hub.js';

test('the console the kernel makes /dev/console is its last console=; unknown (hvm) means both', () => {
  assert.equal(consoleOfCmdline('console=ttyS0 quiet'), 'serial');
  assert.equal(consoleOfCmdline('quiet console=hvc0'), 'hvc');
  assert.equal(consoleOfCmdline('console=hvc0 console=ttyS0,115200'), 'serial');
  assert.equal(consoleOfCmdline('console=ttyS0 console=hvc0'), 'hvc');
  assert.equal(consoleOfCmdline('xconsole=hvc0'), 'serial');
  assert.equal(consoleOfCmdline(undefined), 'both');
});

/** A unix socket server standing in for one of QEMU's chardevs; collects what is typed into it. */
async function chardev(file: string): Promise<{ server: net.Server; peer: Promise<net.Socket>; typed: Buffer[] }> {
  const typed: Buffer[] = [];
  let resolve!: (s: net.Socket) => void;
  const peer = new Promise<net.Socket>((r) => (resolve = r));
  const server = net.createServer((s) => {
    s.on('data', (d) => typed.push(d));
    resolve(s);
  });
  await new Promise<void>((r) => server.listen(file, r));
  return { server, peer, typed };
}

for (const [inputTo, toSerial, toHvc] of [['hvc', '', 'ls\n'], ['serial', 'ls\n', ''], ['both', 'ls\n', 'ls\n']] as Array<[ConsoleInput, string, string]>) {
  test(`the serial line and hvc0 merge into one console and log; input ${inputTo}`, async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'xeno-hub2-'));
    const serial = await chardev(path.join(dir, 'serial.sock'));
    const hvc = await chardev(path.join(dir, 'hvc0.sock'));
    const hub = new ConsoleHub(path.join(dir, 'serial.sock'), path.join(dir, 'c.log'), 65536, { hvcPath: path.join(dir, 'hvc0.sock'), inputTo });
    try {
      const [s, h] = await Promise.all([serial.peer, hvc.peer]);
      const seen: Buffer[] = [];
      hub.attach({ write: (d) => void seen.push(Buffer.from(d)), writableLength: 0, drop: () => undefined });
      s.write('heartbeat 1\n');
      await new Promise((r) => setTimeout(r, 50));
      h.write('xeno# ');
      for (let i = 0; i < 100 && !Buffer.concat(seen).toString().includes('xeno# '); i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal(Buffer.concat(seen).toString(), 'heartbeat 1\nxeno# ');
      assert.equal(readFileSync(path.join(dir, 'c.log'), 'utf8'), 'heartbeat 1\nxeno# ');
      hub.input(Buffer.from('ls\n'));
      for (let i = 0; i < 50 && Buffer.concat([...serial.typed, ...hvc.typed]).length < (toSerial + toHvc).length; i++) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(Buffer.concat(serial.typed).toString(), toSerial);
      assert.equal(Buffer.concat(hvc.typed).toString(), toHvc);
    } finally {
      hub.close();
      serial.server.close();
      hvc.server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
