/**
 * `xeno migrate --copy-storage`, the target side (the recipe is in storage-copy.ts): before
 * anything is created, the backing files and read-only disks the guest needs must exist here;
 * then every copied disk is created in xeno-images/NAME/ beside the state dir (/var/lib/xeno-images
 * for /var/lib/xeno: a guest may not use xenod's own state dir) (its base name kept; same size and
 * format; thin where the source's is, preallocated where it is not; on the same backing file when
 * the source's sits on one), the guest's config is rewritten to name them, and once QEMU waits for
 * the stream they are exported over NBD with the session's TLS-PSK credentials. The files made are
 * listed in the domain record and in NAME/.incoming until the commit, so a failed migration removes
 * them with the half-made domain, and a xenod killed mid-copy removes them at its next start
 * (sweepInterruptedCopies, from recovery.ts, after adoption destroyed the half-made domain).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { XenoError } from '../common/errors.js';
import { crashPoint } from '../common/test-crash.js';
import { VDEV_RE } from '../config/disk-spec.js';
import { formatNodeOf } from '../hypervisor/qemu/block-nodes.js';
import type { Vm } from '../hypervisor/backend.js';
import { DISK_FORMATS, type DomainConfig } from '../model/domain-config.js';
import type { DomainRecord } from '../toolstack/store.js';
import type { Toolstack } from '../toolstack/toolstack.js';
import type { Channel } from './channel.js';
import { TLS_OBJECT_ID } from './protocol.js';
import type { NbdOffer, StorageOffer } from './storage-copy.js';

const execFileP = promisify(execFile);

/** The domain record's extra key listing the disks this host created for an incoming copy. */
export const COPY_EXTRA = 'storageCopyIn';

const exportId = (vdev: string) => `xmig-exp-${vdev}`;
/** In a guest's image dir while its incoming copy is not committed: the files made for it. */
const MARKER = '.incoming';

function refuse(why: string, code: 'BAD_REQUEST' | 'NO_SUCH_FILE' | 'BAD_STATE' = 'BAD_REQUEST'): XenoError {
  return new XenoError(code, `the target refuses the storage copy: ${why}`);
}

/** Where a guest's copied disks live on this host. */
export function imageDirFor(ts: Toolstack, name: string): string {
  return path.join(path.dirname(path.resolve(ts.deps.config.stateDir)), 'xeno-images', name);
}

function checkOffer(o: StorageOffer, c: DomainConfig): void {
  if (!o || !Array.isArray(o.copy) || !Array.isArray(o.mustExist)) throw refuse('malformed storage offer');
  for (const f of o.mustExist) if (typeof f !== 'string' || !path.isAbsolute(f)) throw refuse(`malformed file name ${JSON.stringify(f)}`);
  for (const d of o.copy) {
    const disk = c.disks.find((x) => x.vdev === d?.vdev);
    if (!disk || disk.access !== 'rw' || !VDEV_RE.test(d.vdev)) throw refuse(`disk ${JSON.stringify(d?.vdev)} is not a writable disk of the guest`);
    if (!(DISK_FORMATS as readonly string[]).includes(d.format) || d.format !== disk.format) throw refuse(`disk ${d.vdev}: bad format ${JSON.stringify(d.format)}`);
    if (!Number.isSafeInteger(d.virtualSize) || d.virtualSize <= 0) throw refuse(`disk ${d.vdev}: bad size ${String(d.virtualSize)}`);
    if (typeof d.source !== 'string' || !path.isAbsolute(d.source) || /[\u0000-\u001f]/.test(d.source)) throw refuse(`disk ${d.vdev}: bad file name`);
    if (d.backing && (typeof d.backing.file !== 'string' || !o.mustExist.includes(d.backing.file) || !(DISK_FORMATS as readonly string[]).includes(d.backing.format))) throw refuse(`disk ${d.vdev}: bad backing file`);
  }
}

/**
 * Every check, then the disks created: the config naming them and the files made. Nothing is
 * left when it throws.
 */
export async function createTargetDisks(ts: Toolstack, name: string, config: DomainConfig, offer: StorageOffer): Promise<{ config: DomainConfig; images: string[] }> {
  checkOffer(offer, config);
  const missing = offer.mustExist.filter((f) => !existsSync(f));
  if (missing.length) throw refuse(`${missing.join(', ')} ${missing.length === 1 ? 'does' : 'do'} not exist here (read-only disks and the backing files of copied disks must already be on the target)`, 'NO_SUCH_FILE');
  const dir = imageDirFor(ts, name);
  const files = offer.copy.map((d) => path.join(dir, path.basename(d.source)));
  if (new Set(files).size !== files.length) throw refuse('two copied disks have the same file name');
  const taken = files.filter((f) => existsSync(f));
  if (taken.length) throw refuse(`${taken.join(', ')} already exist${taken.length === 1 ? 's' : ''} here`, 'BAD_STATE');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const made: string[] = [];
  try {
    for (const [i, d] of offer.copy.entries()) {
      const file = files[i]!;
      const fmt = d.format === 'vhd' ? 'vpc' : d.format;
      const prealloc = d.format === 'raw' || d.format === 'qcow2' ? ['-o', `preallocation=${d.thin ? 'off' : 'falloc'}`] : [];
      const backing = d.backing ? ['-b', d.backing.file, '-F', d.backing.format] : [];
      made.push(file);
      await execFileP('qemu-img', ['create', '-q', '-f', fmt, ...prealloc, ...backing, file, String(d.virtualSize)]);
    }
  } catch (e) {
    removeImages(made);
    throw refuse(`cannot create the disks: ${((e as { stderr?: string }).stderr ?? (e as Error).message).trim()}`, 'BAD_STATE');
  }
  writeFileSync(path.join(dir, MARKER), JSON.stringify(made), { mode: 0o600 });
  const byVdev = new Map(offer.copy.map((d, i) => [d.vdev, files[i]!]));
  return { config: { ...config, disks: config.disks.map((d) => (byVdev.has(d.vdev) ? { ...d, target: byVdev.get(d.vdev)! } : d)) }, images: made };
}

/** Files made by createTargetDisks removed (and their directory once empty). */
export function removeImages(files: string[]): void {
  for (const f of files) rmSync(f, { force: true });
  for (const dir of new Set(files.map((f) => path.dirname(f)))) rmSync(path.join(dir, MARKER), { force: true });
  for (const dir of new Set(files.map((f) => path.dirname(f)))) {
    try {
      if (readdirSync(dir).length === 0) rmdirSync(dir);
    } catch {
      /* gone */
    }
  }
}

/** The half-copied disks of a failed incoming copy removed (after its domain is gone). */
export function removeCopiedImages(rec: DomainRecord): void {
  const images = rec.extra[COPY_EXTRA];
  if (Array.isArray(images)) removeImages(images.filter((f): f is string => typeof f === 'string'));
}

/** Committed: the disks are the guest's now, never removed by a sweep. */
export function keepCopiedImages(rec: DomainRecord): void {
  const images = rec.extra[COPY_EXTRA];
  if (Array.isArray(images) && typeof images[0] === 'string') rmSync(path.join(path.dirname(images[0]), MARKER), { force: true });
}

/**
 * At start: the disks of incoming copies a killed xenod left uncommitted (their marker still
 * there, no incoming domain holding them) are removed.
 */
export function sweepInterruptedCopies(ts: Toolstack): string[] {
  const root = path.dirname(imageDirFor(ts, 'x'));
  const swept: string[] = [];
  if (!existsSync(root)) return swept;
  for (const name of readdirSync(root)) {
    const marker = path.join(root, name, MARKER);
    if (!existsSync(marker)) continue;
    const rec = ts.deps.store.byName(name);
    if (rec && rec.extra[COPY_EXTRA] !== undefined) continue;
    let files: string[] = [];
    try {
      files = (JSON.parse(readFileSync(marker, 'utf8')) as unknown[]).filter((f): f is string => typeof f === 'string' && path.dirname(f) === path.join(root, name));
    } catch {
      /* unreadable: the marker alone goes */
    }
    removeImages([...files, path.join(root, name, MARKER)]);
    swept.push(...files);
  }
  return swept;
}

export function markCopiedImages(ts: Toolstack, rec: DomainRecord, images: string[]): void {
  rec.extra = { ...rec.extra, [COPY_EXTRA]: images };
  ts.deps.store.update(rec.id, { extra: rec.extra });
}

function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const a = s.address();
      s.close(() => (a && typeof a === 'object' ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

/** NBD server (TLS-PSK) on the session's local address, one writable export per copied disk. */
export async function exportDisks(vm: Vm, localAddr: string, disks: Array<{ vdev: string; file: string }>): Promise<NbdOffer> {
  const port = await freePort(localAddr);
  await vm.command('nbd-server-start', { addr: { type: 'inet', data: { host: localAddr, port: String(port) } }, 'tls-creds': TLS_OBJECT_ID });
  const exports: NbdOffer['exports'] = [];
  for (const d of disks) {
    const node = await formatNodeOf(vm, d.file);
    if (!node) throw new XenoError('QEMU_ERROR', `QEMU has no node for ${d.file}`);
    await vm.command('block-export-add', { type: 'nbd', id: exportId(d.vdev), 'node-name': node, name: d.vdev, writable: true });
    exports.push({ vdev: d.vdev, name: d.vdev });
  }
  return { port, exports };
}

/** Once the copy is complete: no export, no NBD server left in the guest's QEMU. */
export async function unexportDisks(vm: Vm, vdevs: string[]): Promise<void> {
  for (const v of vdevs) await vm.command('block-export-del', { id: exportId(v) }).catch(() => undefined);
  await vm.command('nbd-server-stop').catch(() => undefined);
}

/** The source's progress messages while it mirrors (named points for the crash tests). */
export async function followCopy(ch: Channel): Promise<void> {
  await ch.recv('mirroring', 5 * 60_000);
  crashPoint('storage-copy:mirroring');
  await ch.recv('storage-ready', 60 * 60_000);
  crashPoint('storage-copy:ram');
}
