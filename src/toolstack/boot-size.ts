/**
 * A warning at create for a direct kernel boot whose memory is obviously too small: less than the
 * kernel image plus the unpacked initrd (the kernel must hold both at once while it unpacks the
 * initramfs; a guest short of that fails at once and, with on_reboot/on_crash = restart, restarts
 * in a loop). The kernel image counts at its size in memory: a bzImage's header says how much it
 * needs while it decompresses itself (boot protocol 2.10+ `init_size`), far more than its file; an
 * uncompressed ELF kernel (PVH boot) counts at the span of its loaded segments. A gzip initrd is
 * measured by unpacking it (zlib, streamed, nothing kept); for zstd,
 * xz, lzma, bzip2 or lz4 the compressed size is used and the warning says so.
 */
import { createReadStream, openSync, readSync, closeSync, statSync } from 'node:fs';
import { createGunzip } from 'node:zlib';
import type { DomainConfig } from '../model/domain-config.js';

const MiB = 1024 * 1024;

export interface InitrdSize {
  bytes: number;
  /** How the size was obtained. */
  method: 'unpacked-gzip' | 'uncompressed' | 'compressed-only';
  compression?: string;
}

function magic(file: string): Buffer {
  const fd = openSync(file, 'r');
  try {
    const b = Buffer.alloc(6);
    readSync(fd, b, 0, 6, 0);
    return b;
  } finally {
    closeSync(fd);
  }
}

function compressionOf(m: Buffer): string | undefined {
  if (m[0] === 0x1f && m[1] === 0x8b) return 'gzip';
  if (m.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  if (m.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz';
  if (m.subarray(0, 3).toString('latin1') === 'BZh') return 'bzip2';
  if (m[0] === 0x5d && m[1] === 0x00) return 'lzma';
  if (m.readUInt32LE(0) === 0x184c2102 || m.readUInt32LE(0) === 0x184d2204) return 'lz4';
  return undefined; // a plain cpio (070701...) or something else: taken as is
}

/** Sizes already measured, by path + size + mtime (a create must not unpack the same initrd each time). */
const cache = new Map<string, InitrdSize>();

/** The unpacked size of an initrd (gzip streamed through zlib; other compressions: their file size). */
export async function initrdSize(file: string): Promise<InitrdSize> {
  const st = statSync(file);
  const key = `${file}\0${st.size}\0${st.mtimeMs}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const r = await measureInitrd(file);
  if (cache.size > 64) cache.clear();
  cache.set(key, r);
  return r;
}

async function measureInitrd(file: string): Promise<InitrdSize> {
  const compression = compressionOf(magic(file));
  if (compression === undefined) return { bytes: statSync(file).size, method: 'uncompressed' };
  if (compression !== 'gzip') return { bytes: statSync(file).size, method: 'compressed-only', compression };
  let bytes = 0;
  await new Promise<void>((resolve, reject) => {
    const gz = createGunzip();
    gz.on('data', (d: Buffer) => (bytes += d.length));
    gz.on('end', resolve);
    // A trailing uncompressed part (padding) after the gzip member: what was unpacked counts.
    gz.on('error', (e) => (bytes > 0 ? resolve() : reject(e)));
    createReadStream(file).on('error', reject).pipe(gz);
  });
  return { bytes, method: 'unpacked-gzip', compression };
}

/** The span an ELF64 kernel's PT_LOAD segments take in memory (a vmlinux booted through PVH), or undefined. */
function elfLoadSpan(fd: number, size: number): number | undefined {
  const e = Buffer.alloc(64);
  if (size < e.length || readSync(fd, e, 0, e.length, 0) < e.length) return undefined;
  if (e.readUInt32BE(0) !== 0x7f454c46 || e[4] !== 2 || e[5] !== 1) return undefined; // ELF, 64-bit, little-endian
  const phoff = Number(e.readBigUInt64LE(0x20));
  const phentsize = e.readUInt16LE(0x36);
  const phnum = e.readUInt16LE(0x38);
  if (phentsize < 56 || phnum === 0 || phoff + phentsize * phnum > size) return undefined;
  const ph = Buffer.alloc(phentsize * phnum);
  readSync(fd, ph, 0, ph.length, phoff);
  let lo = Infinity;
  let hi = 0;
  for (let i = 0; i < phnum; i++) {
    const o = i * phentsize;
    if (ph.readUInt32LE(o) !== 1) continue; // PT_LOAD
    const paddr = Number(ph.readBigUInt64LE(o + 0x18));
    lo = Math.min(lo, paddr);
    hi = Math.max(hi, paddr + Number(ph.readBigUInt64LE(o + 0x28)));
  }
  return hi > lo ? hi - lo : undefined;
}

/**
 * Bytes a kernel image needs in memory: a bzImage's init_size when its header has one, an ELF
 * kernel's loaded span, else its file size.
 */
export function kernelImageSize(file: string): { bytes: number; from: 'init_size' | 'elf' | 'file' } {
  const size = statSync(file).size;
  const fd = openSync(file, 'r');
  const h = Buffer.alloc(0x264);
  try {
    readSync(fd, h, 0, h.length, 0);
    // "HdrS" at 0x202, protocol version at 0x206, init_size (u32) at 0x260 from version 2.10.
    if (size >= h.length && h.toString('latin1', 0x202, 0x206) === 'HdrS' && h.readUInt16LE(0x206) >= 0x020a) {
      const init = h.readUInt32LE(0x260);
      if (init > size) return { bytes: init, from: 'init_size' };
    }
    const span = elfLoadSpan(fd, size);
    if (span !== undefined) return { bytes: span, from: 'elf' };
  } finally {
    closeSync(fd);
  }
  return { bytes: size, from: 'file' };
}

/** The warning for a config whose memory is below kernel + unpacked initrd, or null. */
export async function bootMemoryWarning(c: DomainConfig): Promise<string | null> {
  if (!c.kernel) return null;
  let kernel: ReturnType<typeof kernelImageSize>;
  let initrd: InitrdSize | undefined;
  try {
    kernel = kernelImageSize(c.kernel);
    if (c.ramdisk) initrd = await initrdSize(c.ramdisk);
  } catch {
    return null; // unreadable files are create's own errors
  }
  const need = kernel.bytes + (initrd?.bytes ?? 0);
  if (c.memory * MiB >= need) return null;
  const mb = (n: number) => `${(n / MiB).toFixed(1)} MiB`;
  const parts = [`kernel ${c.kernel} ${mb(kernel.bytes)}${kernel.from === 'init_size' ? ' (its init_size)' : kernel.from === 'elf' ? ' (its ELF segments)' : ''}`];
  if (initrd) {
    const how =
      initrd.method === 'unpacked-gzip' ? 'unpacked (gzip)' :
      initrd.method === 'uncompressed' ? 'uncompressed' : `${initrd.compression}-compressed size (its unpacked size is not estimated, so it needs more)`;
    parts.push(`initrd ${c.ramdisk} ${mb(initrd.bytes)} ${how}`);
  }
  return `warning: ${c.name} has memory = ${c.memory} MiB, less than its kernel plus initrd need to boot (${parts.join(' + ')} = ${mb(need)}): it will likely fail at once, and restart in a loop if on_reboot/on_crash is restart`;
}
