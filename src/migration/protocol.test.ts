import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { Channel, loadRelocationKey, proofMatches, sessionTlsKey, sourceProof, targetProof } from './protocol.js';
import { hostAllowed, plainAddress } from './server.js';

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

test('hosts-allow: empty allows all; regexes match the address or a name', () => {
  assert.ok(hostAllowed([], ['10.0.0.1']));
  assert.ok(hostAllowed(['^10\\.0\\.0\\.'], ['10.0.0.1']));
  assert.ok(hostAllowed(['^localhost$'], ['127.0.0.1', 'localhost']));
  assert.ok(!hostAllowed(['^192\\.0\\.2\\.7$'], ['127.0.0.1', 'localhost']));
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
