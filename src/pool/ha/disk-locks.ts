/**
 * Disk locks: every writable disk of a running guest is locked in etcd by a key bound to its
 * host's lease, `P locks/disk/<id>` = {host, name}, and a guest starts only once ONE transaction
 * has taken the locks of all its writable disks together with its `running/<name>` entry. When
 * the host's lease goes (expired, revoked), its locks go with it, and only then can another host
 * take them.
 *
 * The disk id is the SHA-256 (first 32 hex digits) of the disk's normalised absolute target path
 * (as the validator returns it): a pool's shared storage is mounted at the same path on every host,
 * so the same image has the same id wherever a guest runs (docs/pool-ha.md, "Disk ids").
 * Read-only disks and cdroms take no lock (any number of readers).
 */
import { createHash } from 'node:crypto';
import type { Lease, Namespace } from 'etcd3';
import { XenoError } from '../../common/errors.js';
import type { DiskSpec } from '../../model/domain-config.js';

export const LOCK_PREFIX = 'locks/disk/';

export function diskId(target: string): string {
  return createHash('sha256').update(target).digest('hex').slice(0, 32);
}

/** The targets that take a lock: writable disks (not cdroms, not empty drives). */
export function lockedTargets(disks: readonly DiskSpec[]): string[] {
  return [...new Set(disks.filter((d) => d.access === 'rw' && d.devtype === 'disk' && d.target !== '').map((d) => d.target))];
}

export interface LockHolder {
  host: string;
  name: string;
}

export interface GuestLockRequest {
  host: string;
  name: string;
  disks: readonly DiskSpec[];
  /** JSON for running/<name> (put in the same txn, with the lease). */
  running: unknown;
  /** More puts in the same txn without lease (e.g. ha/<name>), compared by mod revision. */
  extra?: { key: string; value: unknown; modRevision: string };
}

/**
 * Takes every lock of a guest and its running/ entry in one txn, or none. A lock this host already
 * holds for the same guest under the same lease (re-adoption) counts as taken. Refused locks
 * throw BUSY naming the holder.
 */
export async function acquireGuestLocks(ns: Namespace, lease: Lease, req: GuestLockRequest): Promise<string[]> {
  const leaseId = await lease.grant();
  const mine = JSON.stringify({ host: req.host, name: req.name } satisfies LockHolder);
  const keys = lockedTargets(req.disks).map((t) => LOCK_PREFIX + diskId(t));
  for (let attempt = 0; attempt < 3; attempt++) {
    const seen = await Promise.all(keys.map((k) => ns.get(k).exec()));
    let txn = ns.if(`running/${req.name}`, 'Create', '==', 0);
    for (const [i, k] of keys.entries()) {
      const kv = seen[i]!.kvs[0];
      if (!kv) {
        txn = txn.and(k, 'Create', '==', 0);
        continue;
      }
      if (kv.value.toString() !== mine || kv.lease !== leaseId) {
        const h = JSON.parse(kv.value.toString()) as LockHolder;
        throw new XenoError('BUSY', `${req.name}: disk ${lockedTargets(req.disks)[i]} is locked by ${h.name} on host ${h.host} (pool disk lock)`);
      }
      txn = txn.and(k, 'Mod', '==', Number(kv.mod_revision));
    }
    if (req.extra) txn = txn.and(req.extra.key, 'Mod', '==', Number(req.extra.modRevision));
    const puts = keys.map((k) => lease.put(k).value(mine));
    puts.push(lease.put(`running/${req.name}`).value(JSON.stringify(req.running)));
    if (req.extra) puts.push(ns.put(req.extra.key).value(JSON.stringify(req.extra.value)));
    const r = await txn.then(...puts).commit();
    if (r.succeeded) return keys;
  }
  throw new XenoError('BUSY', `${req.name}: its disk locks or running entry changed while being taken (another host starting it?)`);
}

/** Drops a guest's locks and running/ entry (it stopped here), only those this host holds. */
export async function releaseGuestLocks(ns: Namespace, host: string, name: string, disks: readonly DiskSpec[]): Promise<void> {
  const mine = JSON.stringify({ host, name } satisfies LockHolder);
  for (const t of lockedTargets(disks)) {
    const k = LOCK_PREFIX + diskId(t);
    await ns.if(k, 'Value', '==', mine).then(ns.delete().key(k)).commit();
  }
  const run = await ns.get(`running/${name}`).string();
  if (run !== null && (JSON.parse(run) as { host?: string }).host === host) {
    await ns.if(`running/${name}`, 'Value', '==', run).then(ns.delete().key(`running/${name}`)).commit();
  }
}

/** Who holds the lock of a disk target, if anyone. */
export async function lockHolder(ns: Namespace, target: string): Promise<LockHolder | null> {
  const v = await ns.get(LOCK_PREFIX + diskId(target)).string();
  return v === null ? null : (JSON.parse(v) as LockHolder);
}
