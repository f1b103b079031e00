/**
 * The QEMU user's file access, on real files with the real setfacl/getfacl: what is granted, that
 * the ACL comes back exactly, that a file two domains share is put back only by the last, and that
 * files and directories already open to `other` are left alone.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseXlCfg, toDomainConfig } from '../config/index.js';
import { QemuAccess, ensureQemuUser, filesOf } from './qemu-user.js';

const getfacl = (f: string) => execFileSync('getfacl', ['-p', '--', f], { encoding: 'utf8' });

describe('QEMU user file access (ACLs)', () => {
  const root = mkdtempSync(path.join(tmpdir(), 'xeno-qa-'));
  const runRoot = path.join(root, 'run');
  const who = ensureQemuUser('xeno-qemu');
  const access = new QemuAccess(who, runRoot);
  const images = path.join(root, 'images');
  const disk = path.join(images, 'a.img');
  const shared = path.join(images, 'shared.img');
  const open = path.join(root, 'open.img');
  const cfg = (name: string, disks: string[]) =>
    toDomainConfig(parseXlCfg(`name = "${name}"\nkernel = "${open}"\ndisk = [ ${disks.map((d) => `'${d}'`).join(', ')} ]\n`, 'x.cfg'), 'x.cfg');
  const before0: Record<string, string> = {};

  before(() => {
    mkdirSync(images, { mode: 0o700 });
    chmodSync(images, 0o700);
    for (const f of [disk, shared]) writeFileSync(f, 'x', { mode: 0o600 });
    writeFileSync(open, 'k', { mode: 0o644 });
    for (const d of ['1', '2']) mkdirSync(path.join(runRoot, d), { recursive: true });
    for (const f of [disk, shared, images, open]) before0[f] = getfacl(f);
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('lists kernel (r), disks (rw or r) and skips an empty cdrom', () => {
    const c = cfg('f', [`file:${disk},xvda,w`, `file:${shared},xvdb,r`, 'format=raw, vdev=hdc, access=ro, devtype=cdrom']);
    assert.deepEqual(filesOf(c), [
      { path: open, perm: 'r' },
      { path: disk, perm: 'rw' },
      { path: shared, perm: 'r' },
    ]);
  });

  it('grants rw/r on the files and x on a closed directory; nothing on what other can already read', () => {
    access.grant(path.join(runRoot, '1'), cfg('d1', [`file:${disk},xvda,w`, `file:${shared},xvdb,r`]));
    assert.match(getfacl(disk), /^user:xeno-qemu:rw-$/m);
    assert.match(getfacl(shared), /^user:xeno-qemu:r--$/m);
    assert.match(getfacl(images), /^user:xeno-qemu:--x$/m);
    assert.equal(getfacl(open), before0[open], 'a world-readable kernel gets no entry');
  });

  it('a file two domains share keeps its grant until the last one stops, then is exactly as before', () => {
    access.grant(path.join(runRoot, '2'), cfg('d2', [`file:${shared},xvdb,w`]));
    assert.match(getfacl(shared), /^user:xeno-qemu:rw-$/m, 'the union of both domains’ needs');
    access.restore(path.join(runRoot, '1'));
    assert.equal(getfacl(disk), before0[disk], 'd1 alone held its disk: put back');
    assert.match(getfacl(shared), /^user:xeno-qemu:rw-$/m, 'd2 still holds the shared one');
    assert.match(getfacl(images), /^user:xeno-qemu:--x$/m, 'and the directory above it');
    access.restore(path.join(runRoot, '2'));
    for (const f of [disk, shared, images, open]) assert.equal(getfacl(f), before0[f], `${f} as before`);
  });

  it('restore is idempotent (a second stop, or a domain that never got anything)', () => {
    access.restore(path.join(runRoot, '1'));
    access.restore(path.join(runRoot, '2'));
    for (const f of [disk, shared, images]) assert.equal(getfacl(f), before0[f]);
  });
});
