/**
 * Reading files out of a guest's disk image without loop or nbd devices (nothing is mounted in the
 * kernel's block layer): a raw image is read as is; a qcow2 (or any other QEMU format) is exported
 * as a raw, read-only file through qemu-storage-daemon's FUSE export, so only the blocks debugfs
 * asks for are read (a `qemu-img convert` of the whole disk would copy gigabytes at every boot).
 * ext2/3/4 file systems are read with e2fsprogs' debugfs, on the whole disk or on an MBR/GPT
 * partition through debugfs's `FILE?offset=BYTES` device syntax (e2fsprogs >= 1.43).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { XenoError, errorMessage } from '../common/errors.js';
import type { DiskFormat } from '../model/domain-config.js';

const execFileP = promisify(execFile);

/** A raw view of a disk image, to be closed after use. */
export interface RawView {
  file: string;
  close(): Promise<void>;
}

const QEMU_DRIVER: Record<DiskFormat, string> = { raw: 'raw', qcow: 'qcow', qcow2: 'qcow2', vhd: 'vpc', qed: 'qed' };

export async function openRawView(image: string, format: DiskFormat): Promise<RawView> {
  if (format === 'raw') return { file: image, close: async () => undefined };
  const dir = mkdtempSync(path.join(os.tmpdir(), 'xeno-disk-'));
  const mnt = path.join(dir, 'raw');
  writeFileSync(mnt, '');
  // No image lock: the disk may be in use by a QEMU that holds it (an incoming migration's source
  // runs on until the switch-over); only the boot files are read, and nothing is written.
  const child: ChildProcess = spawn('qemu-storage-daemon', [
    '--blockdev', JSON.stringify({ driver: 'file', filename: image, 'node-name': 'file0', 'read-only': true, locking: 'off' }),
    '--blockdev', JSON.stringify({ driver: QEMU_DRIVER[format], file: 'file0', 'node-name': 'disk0', 'read-only': true }),
    '--export', JSON.stringify({ type: 'fuse', id: 'exp0', 'node-name': 'disk0', mountpoint: mnt, writable: false }),
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  let exited = false;
  child.once('exit', () => (exited = true));
  const close = async () => {
    if (!exited) {
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await gone;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  // The export is up once the mount point shows the disk's size.
  const deadline = Date.now() + 20_000;
  while (statSync(mnt).size === 0) {
    if (exited || Date.now() > deadline) {
      await close();
      throw new XenoError('BOOTLOADER_ERROR', `cannot open ${image} as ${format} (qemu-storage-daemon): ${stderr.trim() || 'no FUSE export'}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return { file: mnt, close };
}

/** Byte offsets of the partitions of an MBR or GPT disk ([] for a whole-disk file system). */
export function partitionOffsets(file: string): number[] {
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(512 * 34);
    readSync(fd, buf, 0, buf.length, 0);
    if (buf.readUInt16LE(510) !== 0xaa55) return [];
    const mbr: number[] = [];
    let protective = false;
    for (let i = 0; i < 4; i++) {
      const e = 446 + i * 16;
      const type = buf[e + 4]!;
      const lba = buf.readUInt32LE(e + 8);
      if (type === 0xee) protective = true;
      else if (type !== 0 && type !== 0x05 && type !== 0x0f && lba > 0) mbr.push(lba * 512);
    }
    if (!protective) return mbr;
    if (buf.toString('latin1', 512, 520) !== 'EFI PART') return [];
    const entriesLba = Number(buf.readBigUInt64LE(512 + 72));
    const count = Math.min(buf.readUInt32LE(512 + 80), 128);
    const size = buf.readUInt32LE(512 + 84);
    const table = Buffer.alloc(count * size);
    readSync(fd, table, 0, table.length, entriesLba * 512);
    const gpt: number[] = [];
    for (let i = 0; i < count; i++) {
      const e = i * size;
      if (table.subarray(e, e + 16).every((b) => b === 0)) continue;
      gpt.push(Number(table.readBigUInt64LE(e + 32)) * 512);
    }
    return gpt;
  } finally {
    closeSync(fd);
  }
}

/** debugfs's device argument for the file system at `offset` of `file`. */
export function fsDevice(file: string, offset: number): string {
  return offset ? `${file}?offset=${offset}` : file;
}

/** A path debugfs reads as one argument (its command parser splits on blanks and quotes). */
function checkedPath(p: string): string {
  if (!/^\/[A-Za-z0-9_.+@:,=~\/-]*$/.test(p)) throw new XenoError('BOOTLOADER_ERROR', `the boot path ${JSON.stringify(p)} has characters xeno does not read`);
  return p;
}

/**
 * debugfs, read-only: `-c` (catastrophic mode) skips the bitmaps and `-n` the metadata checksums,
 * which a guest's file system that was not cleanly unmounted (a disk after a save, or in use by a
 * running guest) may fail; the directories, inodes and extents read are what the guest wrote.
 */
const DEBUGFS_READ = ['-c', '-n'];

async function debugfs(device: string, request: string): Promise<{ stdout: string; stderr: string }> {
  try {
    return await execFileP('debugfs', [...DEBUGFS_READ, '-R', request, device], { maxBuffer: 16 << 20, encoding: 'utf8' });
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === 'ENOENT') throw new XenoError('BOOTLOADER_ERROR', 'debugfs is not installed (apt-get install e2fsprogs)');
    throw new XenoError('BOOTLOADER_ERROR', `debugfs on ${device}: ${(err.stderr ?? err.message).trim()}`);
  }
}

/** True when `device` holds an ext2/3/4 file system; else why not (debugfs's complaint). */
export async function isExtFs(device: string): Promise<true | string> {
  try {
    const r = await execFileP('debugfs', [...DEBUGFS_READ, '-R', 'stats', device], { maxBuffer: 16 << 20, encoding: 'utf8' });
    return /Filesystem magic number:\s+0xEF53/.test(r.stdout) || r.stderr.trim().split('\n').pop() || 'no ext2/3/4 magic';
  } catch (e) {
    return ((e as { stderr?: string }).stderr ?? errorMessage(e)).trim().split('\n').pop() ?? 'debugfs failed';
  }
}

/** The target of a symbolic link, or null when `p` is not one (or does not exist). */
async function readLink(device: string, p: string): Promise<string | null> {
  const r = await debugfs(device, `stat ${checkedPath(p)}`);
  if (!/Type: symlink/.test(r.stdout)) return null;
  const fast = /Fast link dest: "(.*)"/.exec(r.stdout);
  if (fast) return fast[1]!;
  return (await debugfs(device, `cat ${p}`)).stdout;
}

/** `p` with its symbolic links followed (as the guest's kernel would: /vmlinuz -> boot/vmlinuz-6.1...). */
export async function resolvePath(device: string, p: string): Promise<string> {
  let cur = p;
  for (let hops = 0; hops < 8; hops++) {
    const target = await readLink(device, cur);
    if (target === null) return cur;
    cur = target.startsWith('/') ? target : path.posix.join(path.posix.dirname(cur), target);
  }
  throw new XenoError('BOOTLOADER_ERROR', `too many symbolic links resolving ${p}`);
}

/** The text of a file, or null when it does not exist. */
export async function readFsFile(device: string, p: string): Promise<string | null> {
  const real = await resolvePath(device, p);
  const r = await debugfs(device, `cat ${checkedPath(real)}`);
  if (/File not found|not found by ext2_lookup/.test(r.stderr)) return null;
  return r.stdout;
}

/** Copies a file out of the file system to `out`. */
export async function dumpFsFile(device: string, p: string, out: string): Promise<void> {
  const real = await resolvePath(device, p);
  rmSync(out, { force: true });
  const r = await debugfs(device, `dump ${checkedPath(real)} ${checkedPath(out)}`);
  let size = 0;
  try {
    size = statSync(out).size;
  } catch {
    /* not written */
  }
  if (size === 0) throw new XenoError('BOOTLOADER_ERROR', `cannot read ${p} from the guest's disk: ${r.stderr.trim() || 'empty file'}`);
}
