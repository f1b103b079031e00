/**
 * The qcow2 backing chains snapshots build (qemu-img, argv arrays only): an overlay created on top
 * of an image, the chain below a file read back, and the offline merge of an overlay into its
 * backing file for a guest that is not running. Paths are absolute and checked by the callers.
 */
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { XenoError } from '../common/errors.js';

const execFileP = promisify(execFile);

export interface ChainLayer {
  filename: string;
  format: string;
  virtualSize: number;
  actualSize?: number;
  backing?: string;
}

function qemuFormat(f: string): string {
  return f === 'vhd' ? 'vpc' : f;
}

async function qemuImg(args: string[], what: string): Promise<string> {
  try {
    const { stdout } = await execFileP('qemu-img', args, { maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  } catch (e) {
    const err = e as { stderr?: string; message: string; code?: string };
    if (err.code === 'ENOENT') throw new XenoError('HOST_ERROR', `${what}: qemu-img is not installed (apt-get install qemu-utils)`);
    throw new XenoError('HOST_ERROR', `${what}: ${(err.stderr ?? err.message).trim()}`);
  }
}

/** A new, empty qcow2 overlay on top of `backing` (its own format given, never probed). */
export async function createOverlay(file: string, backing: string, backingFormat: string): Promise<void> {
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'lazy_refcounts=off', '-b', backing, '-F', qemuFormat(backingFormat), file], `cannot create the overlay ${file}`);
}

function parseChain(json: string): ChainLayer[] {
  const raw = JSON.parse(json) as Array<{ filename: string; format: string; 'virtual-size': number; 'actual-size'?: number; 'full-backing-filename'?: string }>;
  return raw.map((l) => ({ filename: l.filename, format: l.format, virtualSize: l['virtual-size'], actualSize: l['actual-size'], backing: l['full-backing-filename'] }));
}

/** `file` and everything below it (-U: a running QEMU may hold the image). */
export async function chainOf(file: string, format?: string): Promise<ChainLayer[]> {
  const out = await qemuImg(['info', '-U', '--backing-chain', '--output=json', ...(format ? ['-f', qemuFormat(format)] : []), file], `cannot read the image ${file}`);
  return parseChain(out);
}

/**
 * The backing files below a qcow2 image, synchronously (the QEMU user's ACLs are granted in one
 * synchronous pass); empty for other formats or an image qemu-img cannot read.
 */
export function backingFilesOf(file: string, format: string): string[] {
  if (format !== 'qcow2') return [];
  const r = spawnSync('qemu-img', ['info', '-U', '--backing-chain', '--output=json', '-f', 'qcow2', file], { encoding: 'utf8' });
  if (r.status !== 0) return [];
  try {
    return parseChain(r.stdout).slice(1).map((l) => l.filename);
  } catch {
    return [];
  }
}

/** Offline: write `top`'s data into its backing file (`base`). */
export async function commitOffline(top: string, base: string): Promise<void> {
  await qemuImg(['commit', '-q', '-f', 'qcow2', '-b', base, '-d', top], `cannot merge ${top} into ${base}`);
}

/** Offline: point `file` at another backing file holding the same data (no copy). */
export async function rebaseUnsafe(file: string, backing: string, backingFormat: string): Promise<void> {
  await qemuImg(['rebase', '-q', '-u', '-f', 'qcow2', '-b', backing, '-F', qemuFormat(backingFormat), file], `cannot rebase ${file} onto ${backing}`);
}
