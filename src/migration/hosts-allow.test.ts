import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compileHostsAllow, hostAllowed, isAddressPattern, peerAllowed, type Resolver } from './hosts-allow.js';

/** A resolver that records every lookup it is asked for (a real table, not the system's DNS). */
function table(ptr: Record<string, string[]>, a: Record<string, string[]>) {
  const asked: string[] = [];
  const r: Resolver = {
    reverse: async (addr) => (asked.push(`ptr ${addr}`), ptr[addr] ?? []),
    forward: async (name) => (asked.push(`a ${name}`), a[name] ?? []),
  };
  return { r, asked };
}

test('hosts-allow: each pattern matches the whole address, not a prefix or a substring', () => {
  assert.ok(hostAllowed([], ['10.0.0.1']), 'empty allows all');
  assert.ok(hostAllowed(['127.0.0.1'], ['127.0.0.1']));
  assert.ok(!hostAllowed(['127.0.0.1'], ['127.0.0.10']), '127.0.0.1 does not admit 127.0.0.10');
  assert.ok(!hostAllowed(['10.0.0.1'], ['110.0.0.12']), '10.0.0.1 does not admit 110.0.0.12');
  assert.ok(!hostAllowed(['10\\.0\\.0\\.1'], ['10.0.0.12']));
  assert.ok(hostAllowed(['10\\.0\\.0\\.\\d+'], ['10.0.0.12']), 'a pattern written for a range still works');
  assert.ok(!hostAllowed(['a|10.0.0.1'], ['10.0.0.10']), 'alternation is anchored as a whole');
  assert.ok(hostAllowed(['^192\\.0\\.2\\.7$'], ['192.0.2.7']), "Xen-style ^...$ patterns keep working");
  assert.throws(() => compileHostsAllow(['10.(']), /not a valid regular expression/);
});

test('hosts-allow: address patterns vs name patterns', () => {
  for (const p of ['127.0.0.1', '10\\.0\\.0\\.\\d+', 'fe80::1', '^192\\.168\\.[0-9]+\\.1$', '(10|11)\\.0\\.0\\.1']) assert.ok(isAddressPattern(p), p);
  for (const p of ['localhost', 'host\\.example\\.org', '.*\\.lan', 'node_1']) assert.ok(!isAddressPattern(p), p);
});

test('hosts-allow: no DNS lookup at all when only address patterns are configured', async () => {
  const { r, asked } = table({ '10.0.0.9': ['evil.example.org'] }, { 'evil.example.org': ['10.0.0.9'] });
  assert.equal(await peerAllowed(['10.0.0.1', '10\\.0\\.1\\.\\d+'], '10.0.0.9', r), false);
  assert.equal(await peerAllowed(['10.0.0.1'], '10.0.0.1', r), true);
  assert.deepEqual(asked, []);
});

test('hosts-allow: names count only whole and forward-confirmed', async () => {
  const { r, asked } = table(
    { '10.0.0.2': ['peer.example.org'], '10.0.0.3': ['peer.example.org'], '10.0.0.4': ['peer.example.org.evil.net'] },
    { 'peer.example.org': ['10.0.0.2'], 'peer.example.org.evil.net': ['10.0.0.4'] },
  );
  assert.equal(await peerAllowed(['peer\\.example\\.org'], '10.0.0.2', r), true, 'confirmed name');
  assert.equal(await peerAllowed(['peer\\.example\\.org'], '10.0.0.3', r), false, 'the PTR claims the name, but the name resolves elsewhere');
  assert.equal(await peerAllowed(['peer\\.example\\.org'], '10.0.0.4', r), false, 'a name that only starts with the pattern');
  assert.ok(asked.includes('ptr 10.0.0.3') && asked.includes('a peer.example.org'));
});
