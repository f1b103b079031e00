/**
 * A migration without --copy-storage moves RAM and device state only: both hosts must see the SAME
 * disks, and the disks must be safe to hand over.
 *
 * Cache safety (libvirt's rule): the source may still hold written data in its page cache that the
 * target would not see, so only cache=none and directsync (O_DIRECT, no host cache) are safe on
 * shared storage; read-only disks and cdroms always are. Anything else is refused unless forced.
 *
 * Identity, not just the same path (device+inode is host-local, so it cannot tell):
 *  - a read-write FILE gets a xeno UUID in a small sidecar next to it, `.<name>.xeno-id`, written
 *    by the source (O_EXCL, once) and read by the target: on shared storage it sees the same UUID;
 *    a different file at the same path has none or another;
 *  - a read-only disk or cdrom (its content cannot move under us): its size plus a SHA-256 of its
 *    first and last MiB;
 *  - a read-write BLOCK DEVICE: its size plus the device's own identity when the kernel has one
 *    (device-mapper uuid of an LVM volume, or the SCSI wwid);
 *  - a read-write file whose directory the source cannot write (no sidecar): the sample hash;
 *    a guest writing the sampled MiBs in between makes a (safe) false refusal, said so.
 * The source sends one DiskIdentity per disk in `prepare` (protocol.ts); the target recomputes
 * them from its own paths (never writing a sidecar) and refuses the migration on any difference.
 */
import { createHash, randomUUID } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { XenoError } from '../common/errors.js';
import { cacheFlags } from '../hypervisor/qemu/disk-argv.js';
import { diskFactsFor } from '../hypervisor/qemu/disk-probe.js';
import type { DiskSpec, DomainConfig } from '../model/domain-config.js';

export interface DiskIdentity {
  vdev: string;
  /** The sidecar's xeno UUID (read-write files). */
  id?: string;
  /** Bytes (block devices, sampled files). */
  size?: number;
  /** SHA-256 of the first and last MiB (read-only disks, files without a sidecar). */
  sample?: string;
  /** Block device identity (dm uuid / wwid). */
  device?: string;
}

const MiB = 1 << 20;
const sidecarOf = (target: string): string => path.join(path.dirname(target), `.${path.basename(target)}.xeno-id`);

function sample(target: string, size: number): string {
  const h = createHash('sha256');
  const fd = openSync(target, 'r');
  try {
    const buf = Buffer.alloc(MiB);
    for (const at of size > MiB ? [0, size - MiB] : [0]) h.update(buf.subarray(0, readSync(fd, buf, 0, MiB, at)));
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}

function sizeOf(target: string, blockDevice: boolean): number {
  const st = statSync(target);
  if (!blockDevice) return st.size;
  // a block device's stat size is 0: sysfs has it, in 512-byte sectors
  return Number(readFileSync(`/sys/dev/block/${Math.floor(st.rdev / 256)}:${st.rdev % 256}/size`, 'utf8').trim()) * 512;
}

function deviceIdentity(target: string): string | undefined {
  const st = statSync(target);
  const base = `/sys/dev/block/${Math.floor(st.rdev / 256)}:${st.rdev % 256}`;
  for (const f of ['dm/uuid', 'device/wwid', 'serial']) {
    try {
      const v = readFileSync(path.join(base, f), 'utf8').trim();
      if (v) return v;
    } catch {
      /* not this kind of device */
    }
  }
  return undefined;
}

/** One disk's identity; `source` may write the sidecar (the target never does). */
export function diskIdentity(d: DiskSpec, source: boolean): DiskIdentity {
  const st = statSync(d.target);
  const block = st.isBlockDevice();
  const readOnly = d.access === 'ro' || d.devtype === 'cdrom';
  if (readOnly) {
    const size = sizeOf(d.target, block);
    return { vdev: d.vdev, size, sample: sample(d.target, size) };
  }
  if (block) return { vdev: d.vdev, size: sizeOf(d.target, true), device: deviceIdentity(d.target) };
  const car = sidecarOf(d.target);
  try {
    return { vdev: d.vdev, id: readFileSync(car, 'utf8').trim() };
  } catch {
    /* none yet */
  }
  if (source) {
    try {
      writeFileSync(car, `${randomUUID()}\n`, { flag: 'wx', mode: 0o644 });
      return { vdev: d.vdev, id: readFileSync(car, 'utf8').trim() };
    } catch {
      /* a read-only directory: sample instead */
    }
  }
  return { vdev: d.vdev, size: st.size, sample: sample(d.target, st.size) };
}

export function diskIdentities(c: DomainConfig, source: boolean): DiskIdentity[] {
  return c.disks.filter((d) => d.target).map((d) => diskIdentity(d, source));
}

/** Target side: every disk of the config must be the source's (same identity). */
export function checkDiskIdentities(c: DomainConfig, sent: unknown): void {
  if (!Array.isArray(sent)) throw new XenoError('BAD_REQUEST', 'malformed prepare: disks');
  for (const d of c.disks.filter((x) => x.target)) {
    const theirs = (sent as DiskIdentity[]).find((s) => s && s.vdev === d.vdev);
    let mine: DiskIdentity;
    try {
      mine = diskIdentity(d, false);
    } catch (e) {
      throw new XenoError('NO_SUCH_FILE', `disk ${d.vdev}: ${d.target} cannot be read on the target (${(e as Error).message}): without --copy-storage both hosts must share the storage`);
    }
    const same = theirs !== undefined && (['id', 'size', 'sample', 'device'] as const).every((k) => theirs[k] === mine[k]);
    if (!same) {
      const hint = theirs?.id && !mine.id ? ' (no xeno identity sidecar here: a different file at the same path)' : theirs?.sample && mine.sample ? ' (a guest writing the disk meanwhile also changes its sample: retry)' : '';
      throw new XenoError('CONFIG_INVALID', `disk ${d.vdev}: ${d.target} on the target is not the source's disk${hint}: without --copy-storage both hosts must see the same storage`);
    }
  }
}

/** Source side: read-write disks whose cache mode is unsafe on shared storage (see the module comment). */
export function unsafeCacheDisks(c: DomainConfig): Array<{ vdev: string; cache: string }> {
  const out: Array<{ vdev: string; cache: string }> = [];
  for (const d of c.disks) {
    if (!d.target || d.access === 'ro' || d.devtype === 'cdrom') continue;
    const { cache } = diskFactsFor(d, c.diskCache);
    if (!(cacheFlags(cache).direct)) out.push({ vdev: d.vdev, cache });
  }
  return out;
}

export function refuseUnsafeCache(c: DomainConfig, force: boolean): void {
  const bad = unsafeCacheDisks(c);
  if (!bad.length || force) return;
  throw new XenoError(
    'BAD_STATE',
    `migrate ${c.name}: ${bad.map((b) => `disk ${b.vdev} uses cache=${b.cache}`).join(', ')}, unsafe for a migration on shared storage ` +
      '(written data may still sit in this host\'s page cache, unseen by the target): use cache=none or directsync, or --force',
  );
}
