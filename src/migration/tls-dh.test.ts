import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { getDiffieHellman } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { writePskDir } from './protocol.js';
import { DH_PARAMS_FILE, dhParamsPem } from './tls-dh.js';

/** The two INTEGERs of a PKCS#3 DHParameter SEQUENCE (short or long DER lengths). */
function decode(pem: string): { prime: Buffer; generator: Buffer } {
  const der = Buffer.from(pem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64');
  let i = 0;
  const len = () => {
    const b = der[i++]!;
    if (b < 0x80) return b;
    let n = 0;
    for (let k = 0; k < (b & 0x7f); k++) n = n * 256 + der[i++]!;
    return n;
  };
  const int = () => {
    assert.equal(der[i++], 0x02);
    const n = len();
    const v = der.subarray(i, i + n);
    i += n;
    return v[0] === 0 ? v.subarray(1) : v;
  };
  assert.equal(der[i++], 0x30);
  assert.equal(len(), der.length - i);
  return { prime: int(), generator: int() };
}

test('the DH group is RFC 3526 group 14 as PKCS#3 PEM', () => {
  const pem = dhParamsPem();
  assert.match(pem, /^-----BEGIN DH PARAMETERS-----\n[A-Za-z0-9+/=\n]+-----END DH PARAMETERS-----\n$/);
  const { prime, generator } = decode(pem);
  const ref = getDiffieHellman('modp14');
  assert.deepEqual(prime, ref.getPrime());
  assert.deepEqual(generator, ref.getGenerator());
});

test('writePskDir writes dh-params.pem beside keys.psk, and a TLS-PSK server QEMU loads it', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'xeno-dh-'));
  try {
    writePskDir(dir, 'ab'.repeat(32));
    assert.equal(readFileSync(path.join(dir, DH_PARAMS_FILE), 'utf8'), dhParamsPem());
    // QEMU imports the file when the creds object is created (and fails on a malformed one).
    const r = spawnSync('qemu-system-x86_64', ['-machine', 'none', '-display', 'none', '-S', '-nodefaults', '-object', `tls-creds-psk,id=t,endpoint=server,dir=${dir}`, '-qmp', 'stdio'], {
      input: '{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n', timeout: 60_000, encoding: 'utf8',
    });
    assert.equal(r.status, 0, `QEMU refused the creds dir: ${r.stderr}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
