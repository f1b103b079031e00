import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import type { DomainConfig } from '../model/domain-config.js';
import { bootMemoryWarning, initrdSize, kernelImageSize } from './boot-size.js';

const dir = mkdtempSync(path.join(tmpdir(), 'xeno-bootsize-'));
const MiB = 1024 * 1024;
const cfg = (memory: number, kernel: string, ramdisk?: string): DomainConfig => ({
  name: 'g', type: 'pv', memory, maxmem: memory, vcpus: 1, maxvcpus: 1, kernel, ramdisk, disks: [], vifs: [],
  onPoweroff: 'destroy', onReboot: 'restart', onCrash: 'destroy',
});

describe('boot memory estimate', () => {
  after(() => rmSync(dir, { recursive: true, force: true }));
  const kernel = path.join(dir, 'vmlinuz');
  writeFileSync(kernel, Buffer.alloc(3 * MiB, 1));
  const raw = Buffer.concat([Buffer.from('070701'), Buffer.alloc(10 * MiB - 6)]);
  const gz = path.join(dir, 'initrd.gz');
  writeFileSync(gz, gzipSync(raw));
  const zst = path.join(dir, 'initrd.zst');
  writeFileSync(zst, Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.alloc(1000)]));

  it('unpacks a gzip initrd to measure it, and takes other compressions at their file size', async () => {
    assert.deepEqual(await initrdSize(gz), { bytes: 10 * MiB, method: 'unpacked-gzip', compression: 'gzip' });
    assert.deepEqual(await initrdSize(zst), { bytes: 1004, method: 'compressed-only', compression: 'zstd' });
  });

  it("counts a bzImage at its header's init_size", () => {
    const bz = Buffer.alloc(MiB);
    bz.write('HdrS', 0x202, 'latin1');
    bz.writeUInt16LE(0x020f, 0x206);
    bz.writeUInt32LE(40 * MiB, 0x260);
    const f = path.join(dir, 'bzImage');
    writeFileSync(f, bz);
    assert.deepEqual(kernelImageSize(f), { bytes: 40 * MiB, from: 'init_size' });
    assert.deepEqual(kernelImageSize(kernel), { bytes: 3 * MiB, from: 'file' }, 'no boot header: the file size');
  });

  it("counts an ELF kernel (PVH boot) at the span of its PT_LOAD segments, bss included", () => {
    const phoff = 64;
    const elf = Buffer.alloc(phoff + 3 * 56);
    elf.writeUInt32BE(0x7f454c46, 0);
    elf[4] = 2; // 64-bit
    elf[5] = 1; // little-endian
    elf.writeBigUInt64LE(BigInt(phoff), 0x20);
    elf.writeUInt16LE(56, 0x36);
    elf.writeUInt16LE(3, 0x38);
    const seg = (i: number, type: number, paddr: number, memsz: number) => {
      elf.writeUInt32LE(type, phoff + i * 56);
      elf.writeBigUInt64LE(BigInt(paddr), phoff + i * 56 + 0x18);
      elf.writeBigUInt64LE(BigInt(memsz), phoff + i * 56 + 0x28);
    };
    seg(0, 1, 16 * MiB, 20 * MiB);
    seg(1, 4, 0, 100 * MiB); // PT_NOTE: not loaded
    seg(2, 1, 40 * MiB, 8 * MiB); // ends at 48 MiB: a 32 MiB span from 16 MiB
    const f = path.join(dir, 'vmlinux');
    writeFileSync(f, elf);
    assert.deepEqual(kernelImageSize(f), { bytes: 32 * MiB, from: 'elf' });
  });

  it('warns when memory is below kernel + unpacked initrd, naming the sizes, and not otherwise', async () => {
    const w = await bootMemoryWarning(cfg(12, kernel, gz));
    assert.match(w!, /memory = 12 MiB, less than .*kernel .* 3\.0 MiB \+ initrd .* 10\.0 MiB unpacked \(gzip\) = 13\.0 MiB/);
    assert.equal(await bootMemoryWarning(cfg(14, kernel, gz)), null);
    assert.match((await bootMemoryWarning(cfg(2, kernel, zst)))!, /zstd-compressed size \(its unpacked size is not estimated/);
    assert.equal(await bootMemoryWarning({ ...cfg(1, kernel), kernel: undefined }), null, 'no direct kernel boot: nothing to say');
  });
});
