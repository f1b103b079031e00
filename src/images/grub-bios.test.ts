import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { writeGrubBios } from './grub-bios.js';
import { PARTITION_OFFSET, writeMbrDisk } from './mbr.js';

test("GRUB's code goes into the MBR before the disk id and partition table, core.img into the gap", (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'xeno-grub-t-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const grub = path.join(dir, 'root/boot/grub/i386-pc');
  mkdirSync(grub, { recursive: true });
  writeFileSync(path.join(grub, 'boot.img'), Buffer.alloc(512, 0xb0));
  writeFileSync(path.join(grub, 'core.img'), Buffer.alloc(3 * 512 + 7, 0xc0));
  const disk = path.join(dir, 'disk.raw');
  writeMbrDisk(disk, 8 * 1024 * 1024);
  const before = readFileSync(disk).subarray(0, 512);
  writeGrubBios(path.join(dir, 'root'), disk);
  const after = readFileSync(disk);
  assert.ok(after.subarray(0, 440).every((b) => b === 0xb0), 'boot.img code');
  assert.deepEqual(after.subarray(440, 512), before.subarray(440, 512), 'disk id, partition table and signature kept');
  assert.ok(after.subarray(512, 512 + 3 * 512 + 7).every((b) => b === 0xc0), 'core.img from sector 1');
  assert.equal(after[512 + 3 * 512 + 7], 0);
  assert.equal(after.length, 8 * 1024 * 1024);

  writeFileSync(path.join(grub, 'core.img'), Buffer.alloc(PARTITION_OFFSET, 1));
  assert.throws(() => writeGrubBios(path.join(dir, 'root'), disk), /does not fit before the partition/);
});
