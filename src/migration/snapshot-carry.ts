/**
 * A guest's snapshot tree across a migration. On shared storage the overlays and the frozen images
 * under them are the same files on both hosts, so the tree's records travel in `prepare`: the
 * target checks them (every frozen image visible here, no tree of its own for that name), takes
 * them over once the guest is committed to it, and the source forgets them after the target's ok.
 * What cannot move is refused before anything is touched, with what to do instead:
 *  - with --copy-storage: the copy is each disk as the guest sees it now (its top overlay mirrored
 *    onto a fresh image), not the chain of frozen images beneath, so a tree would name files the
 *    target does not have;
 *  - a snapshot with memory: its RAM state is a save file in this host's state dir, not on the
 *    shared storage.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { XenoError } from '../common/errors.js';
import { SNAP_NAME_RE, SnapshotStore, type Snapshot } from '../toolstack/snapshot-store.js';
import type { Toolstack } from '../toolstack/toolstack.js';

export interface CarriedSnapshots {
  /** Oldest first (parents before children). */
  list: Snapshot[];
  current: string | null;
}

const stores = new Map<string, SnapshotStore>();

/** The snapshot tables of this xenod's database (a connection of the migration code's own). */
function storeOf(ts: Toolstack): SnapshotStore {
  const file = path.join(ts.deps.config.stateDir, 'xeno.db');
  let s = stores.get(file);
  if (!s) stores.set(file, (s = new SnapshotStore(() => file)));
  return s;
}

const names = (l: Snapshot[]) => l.map((s) => s.name).join(', ');

/** The source's tree to send, or undefined when it has none; refuses what cannot travel. */
export function snapshotsToCarry(ts: Toolstack, name: string, copyStorage: boolean): CarriedSnapshots | undefined {
  const store = storeOf(ts);
  const list = store.list(name);
  if (list.length === 0) return undefined;
  const withMemory = list.filter((s) => s.memory);
  if (copyStorage) {
    const ram = withMemory.length ? ` (and ${names(withMemory)} hold${withMemory.length === 1 ? 's' : ''} RAM state in this host's state dir, which no migration carries)` : '';
    throw new XenoError('BAD_STATE', `${name} has ${list.length} snapshot(s) (${names(list)}): --copy-storage copies each disk as the guest sees it now, not the overlay chain its snapshots live in, so the tree cannot go along${ram}; delete them first (xeno snapshot-delete merges each back while the guest runs)${withMemory.length ? '' : ' or migrate over shared storage, which carries them'}`);
  }
  if (withMemory.length) {
    throw new XenoError('BAD_STATE', `snapshot(s) ${names(withMemory)} of ${name} hold RAM state in this host's state dir, which a migration does not carry: delete them first (xeno snapshot-delete), disk-only snapshots travel with the guest`);
  }
  return { list, current: store.current(name) };
}

/** The target's checks, in prepare: well-formed, its files here, and no tree of its own already. */
export function checkCarriedSnapshots(ts: Toolstack, name: string, c: CarriedSnapshots | undefined): void {
  if (c === undefined) return;
  const refuse = (why: string) => new XenoError('BAD_REQUEST', `the target refuses the snapshot tree of ${name}: ${why}`);
  if (!c || !Array.isArray(c.list) || (c.current !== null && typeof c.current !== 'string')) throw refuse('malformed');
  const seen = new Set<string>();
  for (const s of c.list) {
    if (!s || typeof s.name !== 'string' || !SNAP_NAME_RE.test(s.name) || seen.has(s.name)) throw refuse(`bad snapshot name ${JSON.stringify(s?.name)}`);
    if (s.parent !== null && !seen.has(s.parent)) throw refuse(`snapshot ${s.name}'s parent is not before it`);
    if (s.memory || s.stateFile !== null) throw refuse(`snapshot ${s.name} has memory state, which does not travel`);
    if (!Array.isArray(s.disks) || !s.config || typeof s.created !== 'number') throw refuse(`snapshot ${s.name} is malformed`);
    for (const d of s.disks) {
      if (typeof d?.file !== 'string' || !path.isAbsolute(d.file)) throw refuse(`snapshot ${s.name}: bad file name`);
      if (!existsSync(d.file)) throw refuse(`snapshot ${s.name}'s frozen image ${d.file} is not here (the tree needs shared storage)`);
    }
    seen.add(s.name);
  }
  if (c.current !== null && !seen.has(c.current)) throw refuse(`its current snapshot ${c.current} is not in it`);
  const own = storeOf(ts).list(name);
  if (own.length) throw refuse(`this host already holds snapshots of a guest named ${name} (${names(own)})`);
}

/** Committed here: the tree is this host's now. */
export function adoptCarriedSnapshots(ts: Toolstack, name: string, c: CarriedSnapshots | undefined): void {
  if (c?.list.length) storeOf(ts).adopt(name, c.list, c.current);
}

/** The guest left with its tree (the target confirmed): forgotten here. */
export function forgetCarriedSnapshots(ts: Toolstack, name: string, c: CarriedSnapshots | undefined): void {
  if (c?.list.length) storeOf(ts).forget(name);
}

/**
 * A xenod killed between the target's ok and forgetCarriedSnapshots: at its start the committed
 * outgoing intent says the guest (and its tree) left, so the records still here are dropped.
 * Returns the names dropped ('' if none).
 */
export function forgetHandedOverSnapshots(ts: Toolstack, name: string): string {
  const store = storeOf(ts);
  const left = names(store.list(name));
  if (left) store.forget(name);
  return left;
}
