/**
 * Crash consistency of migrations. Each side writes its intent into the domain record's `extra`
 * before acting, so a xenod killed mid-migration resolves it at its next start (after adoptAll):
 *  - source, never committed: QEMU's migration is cancelled and the guest resumed (left paused if
 *    it was paused); the target's uncommitted copy is destroyed by the target's own session
 *    (its peer is gone, or silent for xeno-relocation-timeout, 60 s by default).
 *  - source, committed (the commit was on its way): the target owns the guest (the source's disks
 *    were handed over): the local copy is released, never run again, and its snapshot records
 *    (the target took the tree over) and disk ACL entries go with it.
 *  - target, never committed: its half-made domain is destroyed.
 */
import { errorMessage } from '../common/errors.js';
import { handOverGrants } from '../host/qemu-user.js';
import type { DomainRecord } from '../toolstack/store.js';
import type { Toolstack } from '../toolstack/toolstack.js';
import { backToOwnState, cancelMigration, dropTlsPsk } from './qemu-side.js';
import { forgetHandedOverSnapshots } from './snapshot-carry.js';
import { abortStorageCopy } from './storage-copy.js';
import { COPY_EXTRA, removeCopiedImages, sweepInterruptedCopies } from './storage-copy-target.js';

const OUT = 'migrationOut';
const IN = 'migrationIn';

export interface OutgoingIntent {
  to: string;
  wasRunning: boolean;
  committed: boolean;
  /** A --copy-storage migration: the source keeps its own disks (and their ACL entries). */
  copyStorage?: boolean;
  since: number;
}

function setExtra(ts: Toolstack, rec: DomainRecord, extra: Record<string, unknown>): void {
  rec.extra = extra;
  ts.deps.store.update(rec.id, { extra });
}

export function markIncoming(ts: Toolstack, rec: DomainRecord, from: string): void {
  setExtra(ts, rec, { ...rec.extra, [IN]: { from, since: Date.now() } });
}

export function withoutIncoming(rec: DomainRecord): Record<string, unknown> {
  const { [IN]: _gone, [COPY_EXTRA]: _copied, ...rest } = rec.extra;
  return rest;
}

export function markOutgoing(ts: Toolstack, rec: DomainRecord, intent: OutgoingIntent): void {
  setExtra(ts, rec, { ...rec.extra, [OUT]: intent });
}

/** A migration out of this host is under way (before or after its commit). */
export function isMigratingOut(rec: DomainRecord): boolean {
  return rec.extra[OUT] !== undefined;
}

export function clearOutgoing(ts: Toolstack, rec: DomainRecord): void {
  const { [OUT]: _gone, ...rest } = rec.extra;
  setExtra(ts, rec, rest);
}

/** Resolve every migration a killed xenod left half-way (call after adoptAll, before serving). */
export async function recoverMigrations(ts: Toolstack): Promise<void> {
  try {
    await recoverEach(ts);
  } finally {
    for (const f of sweepInterruptedCopies(ts)) ts.event(null, 'migrate-in-failed', `${f}: a disk of an incoming storage copy interrupted by a restart of xenod, removed`);
  }
}

async function recoverEach(ts: Toolstack): Promise<void> {
  for (const rec of ts.deps.store.all()) {
    const out = rec.extra[OUT] as OutgoingIntent | undefined;
    try {
      if (rec.extra[IN] !== undefined) {
        await ts.destroy(String(rec.id));
        removeCopiedImages(rec);
        ts.event(rec, 'migrate-in-failed', `incoming migration of ${rec.name} was interrupted by a restart of xenod before it was committed: the half-made domain ${rec.id} was destroyed`);
      } else if (out?.committed) {
        // What the source does after the target's ok, done here if it was killed before: the tree
        // of snapshots is the target's now (a stale one here would refuse the guest coming back),
        // and so are the disks' ACL entries on shared storage (not put back at this QEMU's end).
        const tree = forgetHandedOverSnapshots(ts, rec.name);
        if (out.copyStorage !== true) handOverGrants(rec.runDir, rec.config);
        await ts.withDomain(String(rec.id), 'destroy', (r) =>
          ts.releaseLocked(r, 'migrate', `${rec.name} (${rec.id}) had been handed over to ${out.to} when xenod stopped: the target owns it, the copy here was released${tree ? ` (its snapshot records ${tree} with it)` : ''}`),
        );
      } else if (out || rec.state === 'migrating') {
        const wasRunning = out?.wasRunning ?? true;
        const vm = ts.liveOf(rec).vm;
        await cancelMigration(vm);
        await abortStorageCopy(vm);
        await dropTlsPsk(vm);
        await backToOwnState(vm, wasRunning);
        ts.deps.store.update(rec.id, { state: wasRunning ? 'running' : 'paused' });
        clearOutgoing(ts, rec);
        ts.event(rec, 'migrate-failed', `migration of ${rec.name} to ${out?.to ?? 'another host'} was interrupted by a restart of xenod before it was committed: cancelled, the guest keeps ${wasRunning ? 'running' : 'paused'} here`);
      }
    } catch (e) {
      // Never left in `migrating`: paused, for the admin to look at (destroy is legal there anyway).
      if (ts.deps.store.get(rec.id)?.state === 'migrating') ts.deps.store.update(rec.id, { state: 'paused' });
      ts.event(rec, 'error', `resolving the interrupted migration of ${rec.name} failed: ${errorMessage(e)}; it is kept paused`);
    }
  }
}
