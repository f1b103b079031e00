/**
 * The snapshot tree of every guest, in its own tables of xenod's database (a further connection to
 * the same SQLite file, WAL mode, as the definitions): it outlives xenod restarts and the guest's
 * stops. A snapshot names, per disk, the image frozen at that moment (the layer below the overlay
 * the guest wrote to from then on); `current` is the snapshot the guest's present state grew from.
 */
import { LazyDb } from './lazy-db.js';
import type { DiskFormat } from '../model/domain-config.js';
import type { DomainConfig } from '../model/domain-config.js';

/** A snapshot's name: 1-64 of [A-Za-z0-9_.-], not starting with . or -. */
export const SNAP_NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;

export interface SnapshotDisk {
  vdev: string;
  /** The image holding the disk as it was at the snapshot (read-only from then on). */
  file: string;
  format: DiskFormat;
}

export interface Snapshot {
  domain: string;
  name: string;
  /** The snapshot this one was taken on top of (null: the first). */
  parent: string | null;
  /** Seconds since the epoch. */
  created: number;
  /** RAM and device state saved too: a revert resumes the guest where it was. */
  memory: boolean;
  /** The save file holding that state (memory only). */
  stateFile: string | null;
  /** What the guest was doing: a stopped guest's snapshot has disks only. */
  vmState: 'running' | 'paused' | 'stopped';
  /** The guest's config at the snapshot, its disks pointing at the frozen images. */
  config: DomainConfig;
  disks: SnapshotDisk[];
  quiesced: boolean;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS snapshots (
  domain TEXT NOT NULL,
  name TEXT NOT NULL,
  parent TEXT,
  created REAL NOT NULL,
  memory INTEGER NOT NULL,
  state_file TEXT,
  vm_state TEXT NOT NULL,
  config TEXT NOT NULL,
  disks TEXT NOT NULL,
  quiesced INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (domain, name)
);
CREATE TABLE IF NOT EXISTS snapshot_current (domain TEXT PRIMARY KEY, name TEXT);
`;

interface Row {
  domain: string;
  name: string;
  parent: string | null;
  created: number;
  memory: number;
  state_file: string | null;
  vm_state: string;
  config: string;
  disks: string;
  quiesced: number;
}

function fromRow(r: Row): Snapshot {
  return {
    domain: r.domain, name: r.name, parent: r.parent, created: r.created, memory: r.memory === 1, stateFile: r.state_file,
    vmState: r.vm_state as Snapshot['vmState'], config: JSON.parse(r.config) as DomainConfig, disks: JSON.parse(r.disks) as SnapshotDisk[],
    quiesced: r.quiesced === 1,
  };
}

/** Opened on first use (LazyDb): building the API (e.g. for its documentation) touches no file. */
export class SnapshotStore extends LazyDb {
  constructor(file: () => string) {
    super(file, SCHEMA);
  }

  /** Oldest first. */
  list(domain: string): Snapshot[] {
    return (this.db.prepare(`SELECT * FROM snapshots WHERE domain = ? ORDER BY created, rowid`).all(domain) as Row[]).map(fromRow);
  }

  get(domain: string, name: string): Snapshot | undefined {
    const r = this.db.prepare(`SELECT * FROM snapshots WHERE domain = ? AND name = ?`).get(domain, name) as Row | undefined;
    return r && fromRow(r);
  }

  current(domain: string): string | null {
    const r = this.db.prepare(`SELECT name FROM snapshot_current WHERE domain = ?`).get(domain) as { name: string | null } | undefined;
    return r?.name ?? null;
  }

  /** A new snapshot, which becomes the current one, in one transaction. */
  add(s: Snapshot): void {
    this.db.transaction(() => {
      this.db
        .prepare(
          `INSERT INTO snapshots (domain, name, parent, created, memory, state_file, vm_state, config, disks, quiesced)
           VALUES (@domain, @name, @parent, @created, @memory, @stateFile, @vmState, @config, @disks, @quiesced)`,
        )
        .run({ ...s, memory: s.memory ? 1 : 0, config: JSON.stringify(s.config), disks: JSON.stringify(s.disks), quiesced: s.quiesced ? 1 : 0 });
      this.setCurrentIn(s.domain, s.name);
    })();
  }

  /** A whole tree taken over (a migrated guest's), oldest first so parents precede children. */
  adopt(domain: string, snaps: Snapshot[], current: string | null): void {
    this.db.transaction(() => {
      for (const s of snaps) this.add({ ...s, domain });
      this.setCurrentIn(domain, current);
    })();
  }

  /** Every snapshot of `domain` forgotten (it left this host with its tree). */
  forget(domain: string): void {
    this.db.transaction(() => {
      this.db.prepare(`DELETE FROM snapshots WHERE domain = ?`).run(domain);
      this.db.prepare(`DELETE FROM snapshot_current WHERE domain = ?`).run(domain);
    })();
  }

  setCurrent(domain: string, name: string | null): void {
    this.setCurrentIn(domain, name);
  }

  private setCurrentIn(domain: string, name: string | null): void {
    this.db.prepare(`INSERT INTO snapshot_current (domain, name) VALUES (?, ?) ON CONFLICT(domain) DO UPDATE SET name = excluded.name`).run(domain, name);
  }

  /**
   * Drop `name`: its children hang from its parent, the files of snapshots in `disks` are
   * replaced (a merged layer), and current moves to the parent if it was this one.
   */
  remove(domain: string, name: string, parent: string | null, replaced: Map<string, SnapshotDisk[]>): void {
    this.db.transaction(() => {
      this.db.prepare(`DELETE FROM snapshots WHERE domain = ? AND name = ?`).run(domain, name);
      this.db.prepare(`UPDATE snapshots SET parent = ? WHERE domain = ? AND parent = ?`).run(parent, domain, name);
      for (const [child, disks] of replaced) this.db.prepare(`UPDATE snapshots SET disks = ? WHERE domain = ? AND name = ?`).run(JSON.stringify(disks), domain, child);
      if (this.current(domain) === name) this.setCurrentIn(domain, parent);
    })();
  }
}
