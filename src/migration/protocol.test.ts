import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { Channel } from './channel.js';
import { controlKeys, loadRelocationKey, proofMatches, sessionTlsKey, sourceProof, targetProof } from './protocol.js';
import { plainAddress } from './server.js';

test('the relocation key: hex, long enough, owner-only; absent is a clear error', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'xeno-key-'));
  try {
    const f = path.join(dir, 'k.psk');
    writeFileSync(f, 'ab'.repeat(32) + '\n', { mode: 0o600 });
    assert.equal(loadRelocationKey(f).length, 32);
    assert.throws(() => loadRelocationKey(undefined), /set \(xeno-relocation-key-file/);
    chmodSync(f, 0o644);
    assert.throws(() => loadRelocationKey(f), /readable by others .*chmod 600/);
    writeFileSync(f, 'abcd\n', { mode: 0o600 });
    chmodSync(f, 0o600);
    assert.throws(() => loadRelocationKey(f), /at least 32 hex digits/);
    assert.throws(() => loadRelocationKey(path.join(dir, 'none')), /cannot read relocation key file/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('proofs: each side answers the other nonce; roles and keys do not mix', () => {
  const k = Buffer.alloc(32, 1);
  const other = Buffer.alloc(32, 2);
  const ns = 'a'.repeat(64);
  const nt = 'b'.repeat(64);
  assert.ok(proofMatches(targetProof(k, ns, nt), targetProof(k, ns, nt)));
  assert.ok(!proofMatches(targetProof(k, ns, nt), targetProof(other, ns, nt)));
  assert.notEqual(targetProof(k, ns, nt), sourceProof(k, nt, ns), 'a target proof cannot be reflected as a source proof');
  assert.notEqual(sessionTlsKey(k, ns, nt), sessionTlsKey(k, ns, 'c'.repeat(64)), 'a new TLS key per migration');
  assert.ok(!proofMatches(targetProof(k, ns, nt), undefined));
  assert.ok(!proofMatches(targetProof(k, ns, nt), 'short'));
});

test('plain addresses: IPv4-mapped IPv6 shown as IPv4', () => {
  assert.equal(plainAddress('::ffff:127.0.0.1'), '127.0.0.1');
  assert.equal(plainAddress('::1'), '::1');
});

test('the channel: JSON lines in order, error lines become errors, a close fails the wait', async () => {
  const server = net.createServer((s) => {
    s.write('{"t":"welcome","host":"h"}\n{"t":"error","code":"NO_MEMORY","message":"full"}\n');
    s.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  try {
    const port = (server.address() as net.AddressInfo).port;
    const sock = net.connect(port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    const ch = new Channel(sock, 'the target');
    assert.equal((await ch.recv('welcome', 2000)).host, 'h');
    await assert.rejects(ch.recv('prepared', 2000), (e: Error & { code?: string }) => e.code === 'NO_MEMORY' && /full/.test(e.message));
    await assert.rejects(ch.recv('ok', 2000), /closed the connection/);
  } finally {
    server.close();
  }
});

/** Two channels joined by a real TCP connection; `tap` sees (and may rewrite) each line source->target. */
async function securedPair(tap: (line: string) => string = (l) => l) {
  const k = Buffer.alloc(32, 7);
  const [ns, nt] = ['a'.repeat(64), 'b'.repeat(64)];
  let targetSock!: net.Socket;
  const server = net.createServer((s) => (targetSock = s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const relay = net.createServer((c) => {
    const up = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    let buf = '';
    c.setEncoding('utf8');
    c.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        up.write(tap(buf.slice(0, nl)) + '\n');
        buf = buf.slice(nl + 1);
      }
    });
    up.pipe(c);
    c.on('close', () => up.destroy());
    up.on('close', () => c.destroy());
  });
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', () => r()));
  const sock = net.connect((relay.address() as net.AddressInfo).port, '127.0.0.1');
  await new Promise((r) => sock.once('connect', r));
  while (!targetSock) await new Promise((r) => setTimeout(r, 5));
  const source = new Channel(sock, 'the target');
  const target = new Channel(targetSock, 'the source');
  source.secure(controlKeys(k, ns, nt, 'source'));
  target.secure(controlKeys(k, ns, nt, 'target'));
  return { source, target, close: () => (server.close(), relay.close(), source.close(), target.close()) };
}

test('secured channel: messages pass in order both ways', async () => {
  const p = await securedPair();
  try {
    p.source.send({ t: 'done', paused: false });
    p.source.send({ t: 'commit' });
    assert.equal((await p.target.recv('done', 2000)).paused, false);
    await p.target.recv('commit', 2000);
    p.target.send({ t: 'loaded' });
    await p.source.recv('loaded', 2000);
  } finally {
    p.close();
  }
});

for (const [what, tap] of [
  ['altered', (l: string) => l.replace('"paused":false', '"paused":true')],
  ['replayed', (() => { let first = ''; return (l: string) => (first ? first : (first = l)); })()],
  ['injected without a MAC', (l: string) => l.slice(65)],
] as const) {
  test(`secured channel: a line ${what} on the way ends the session`, async () => {
    const p = await securedPair(tap);
    try {
      p.source.send({ t: 'done', paused: false });
      p.source.send({ t: 'commit' });
      if (what === 'replayed') {
        await p.target.recv('done', 2000);
        await assert.rejects(p.target.recv('commit', 2000), /integrity check failed/);
      } else await assert.rejects(p.target.recv('done', 2000), /integrity check failed/);
    } finally {
      p.close();
    }
  });
}

test('secured channel: a dropped line is detected by the next one', async () => {
  let n = 0;
  const p = await securedPair((l) => (n++ === 0 ? '' : l));
  try {
    p.source.send({ t: 'done', paused: false });
    p.source.send({ t: 'commit' });
    await assert.rejects(p.target.recv('commit', 2000), /integrity check failed/);
  } finally {
    p.close();
  }
});

test('the control keys differ per direction and per session', () => {
  const k = Buffer.alloc(32, 1);
  const s = controlKeys(k, 'a'.repeat(64), 'b'.repeat(64), 'source');
  const t = controlKeys(k, 'a'.repeat(64), 'b'.repeat(64), 'target');
  assert.deepEqual(s.send, t.recv);
  assert.deepEqual(s.recv, t.send);
  assert.notDeepEqual(s.send, s.recv);
  assert.notDeepEqual(controlKeys(k, 'a'.repeat(64), 'c'.repeat(64), 'source').send, s.send);
});
