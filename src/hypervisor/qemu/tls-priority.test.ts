import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hostCpuFlags, tlsPskPriority } from './tls-priority.js';

test('AES-128-GCM first with AES instructions, ChaCha20-Poly1305 first without; AEAD only', () => {
  assert.equal(tlsPskPriority(['fpu', 'aes', 'avx2']), 'NORMAL:-CIPHER-ALL:+AES-128-GCM:+CHACHA20-POLY1305:+AES-256-GCM');
  assert.equal(tlsPskPriority(['fpu', 'sse2']), 'NORMAL:-CIPHER-ALL:+CHACHA20-POLY1305:+AES-128-GCM:+AES-256-GCM');
  // a flag that merely contains "aes" is not it
  assert.match(tlsPskPriority(['vaes_only']), /^NORMAL:-CIPHER-ALL:\+CHACHA20/);
});

test("this host's flags are read from /proc/cpuinfo", () => {
  assert.ok(hostCpuFlags().length > 0);
  assert.ok(hostCpuFlags().includes('fpu'));
});
