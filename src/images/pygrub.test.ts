/**
 * pygrub on real disk images made here with mkfs.ext4 -d (whole disk, MBR and GPT partitions,
 * qcow2 through qemu-storage-daemon's FUSE export), read with the real debugfs. The "kernels" are
 * marker files: what is checked is that the right bytes come out.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import type { DiskSpec } from '../model/domain-config.js';
import { pygrub } from './pygrub.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'xeno-pygrub-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function tree(name: string, grub: string): string {
  const root = path.join(tmp, name);
  mkdirSync(path.join(root, 'boot/grub'), { recursive: true });
  writeFileSync(path.join(root, 'boot/vmlinuz-6.1.0-1'), 'KERNEL-ONE');
  writeFileSync(path.join(root, 'boot/vmlinuz-6.1.0-2'), 'KERNEL-TWO');
  writeFileSync(path.join(root, 'boot/initrd.img-6.1.0-2'), 'INITRD-TWO');
  symlinkSync('boot/vmlinuz-6.1.0-2', path.join(root, 'vmlinuz'));
  symlinkSync('/boot/initrd.img-6.1.0-2', path.join(root, 'initrd.img'));
  writeFileSync(path.join(root, 'boot/grub/grub.cfg'), grub);
  return root;
}

const GRUB = "set default=0\nmenuentry 'Debian' {\n  linux /vmlinuz root=LABEL=xeno-root ro\n  initrd /initrd.img\n}\nmenuentry 'Old' {\n  linux /boot/vmlinuz-6.1.0-1 root=/dev/xvda1 ro\n}\n";

/** A 1 MiB-aligned single partition table: MBR type 0x83, or GPT with one entry. */
function withPartition(file: string, kind: 'mbr' | 'gpt'): void {
  const b = Buffer.alloc(34 * 512);
  b[510] = 0x55;
  b[511] = 0xaa;
  const p = 446;
  b[p + 4] = kind === 'mbr' ? 0x83 : 0xee;
  b.writeUInt32LE(kind === 'mbr' ? 2048 : 1, p + 8);
  b.writeUInt32LE(100000, p + 12);
  if (kind === 'gpt') {
    b.write('EFI PART', 512, 'latin1');
    b.writeBigUInt64LE(2n, 512 + 72);
    b.writeUInt32LE(128, 512 + 80);
    b.writeUInt32LE(128, 512 + 84);
    b.fill(0x11, 1024, 1024 + 16); // a type GUID: the entry is used
    b.writeBigUInt64LE(2048n, 1024 + 32);
  }
  execFileSync('dd', ['of=' + file, 'conv=notrunc', 'status=none'], { input: b });
}

function disk(name: string, root: string, opts: { partition?: 'mbr' | 'gpt'; qcow2?: boolean } = {}): DiskSpec {
  const raw = path.join(tmp, `${name}.raw`);
  execFileSync('truncate', ['-s', '64M', raw]);
  if (opts.partition) withPartition(raw, opts.partition);
  execFileSync('mkfs.ext4', ['-q', '-F', '-d', root, ...(opts.partition ? ['-E', 'offset=1048576'] : []), raw, '60M']);
  if (!opts.qcow2) return { target: raw, format: 'raw', vdev: 'xvda', access: 'rw', devtype: 'disk' };
  const q = path.join(tmp, `${name}.qcow2`);
  execFileSync('qemu-img', ['convert', '-O', 'qcow2', raw, q]);
  return { target: q, format: 'qcow2', vdev: 'xvda', access: 'rw', devtype: 'disk' };
}

test('whole-disk raw ext4: the default entry, its symlinked kernel and initrd, its command line', async () => {
  const out = path.join(tmp, 'out1');
  const r = await pygrub(disk('whole', tree('t1', GRUB)), [], out);
  assert.equal(readFileSync(r.kernel, 'utf8'), 'KERNEL-TWO');
  assert.equal(readFileSync(r.ramdisk!, 'utf8'), 'INITRD-TWO');
  assert.equal(r.args, 'root=LABEL=xeno-root ro');
  assert.equal(r.source, 'whole disk: /boot/grub/grub.cfg');
});

test('qcow2 with an MBR partition: read through the FUSE export; --entry=1 and --args pick another', async () => {
  const r = await pygrub(disk('mbr', tree('t2', GRUB), { partition: 'mbr', qcow2: true }), ['--entry=1', '--args=console=hvc0'], path.join(tmp, 'out2'));
  assert.equal(readFileSync(r.kernel, 'utf8'), 'KERNEL-ONE');
  assert.equal(r.ramdisk, undefined);
  assert.equal(r.args, 'root=/dev/xvda1 ro console=hvc0');
  assert.equal(r.source, 'partition 1: /boot/grub/grub.cfg');
});

test('GPT partition, raw: found by the partition table', async () => {
  const r = await pygrub(disk('gpt', tree('t3', GRUB), { partition: 'gpt' }), [], path.join(tmp, 'out3'));
  assert.equal(readFileSync(r.kernel, 'utf8'), 'KERNEL-TWO');
});

test('a disk without a boot config, or a bad --entry, is a clear error', async () => {
  const root = path.join(tmp, 't4');
  mkdirSync(root);
  writeFileSync(path.join(root, 'x'), 'x');
  await assert.rejects(pygrub(disk('empty', root), [], path.join(tmp, 'out4')), /no ext2\/3\/4 file system .* holds a grub\.cfg/);
  await assert.rejects(pygrub(disk('bad', tree('t5', GRUB)), ['--entry=7'], path.join(tmp, 'out5')), /has 2 entries/);
});
