/**
 * xenod's state in SQLite: the domains (their stored config, pid, QEMU machine type), the counter
 * that hands out domain ids (never reused while the state lives) and an event log.
 */
import Database from 'better-sqlite3';
import type { DomainConfig } from '../model/domain-config.js';
import type { DomainState } from '../model/domain-state.js';
import type { StatsEvent } from '../model/stats.js';

export interface DomainRecord {
  id: number;
  name: string;
  uuid: string;
  config: DomainConfig;
  state: DomainState;
  pid: number | null;
  machineType: string;
  accel: string;
  startTime: number;
  runDir: string;
  /** Feature-owned extras (pins, network leases, pending operations...). */
  extra: Record<string, unknown>;
}

/** One line of the event log: the same shape the stats API returns beside its samples. */
export type EventRecord = StatsEvent;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS domains (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  uuid TEXT NOT NULL,
  config TEXT NOT NULL,
  state TEXT NOT NULL,
  pid INTEGER,
  machine_type TEXT NOT NULL,
  accel TEXT NOT NULL,
  start_time REAL NOT NULL,
  run_dir TEXT NOT NULL,
  extra TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  ts REAL NOT NULL,
  domid INTEGER,
  name TEXT,
  kind TEXT NOT NULL,
  message TEXT NOT NULL
);
`;

interface Row {
  id: number;
  name: string;
  uuid: string;
  config: string;
  state: string;
  pid: number | null;
  machine_type: string;
  accel: string;
  start_time: number;
  run_dir: string;
  extra: string;
}

function fromRow(r: Row): DomainRecord {
  return {
    id: r.id,
    name: r.name,
    uuid: r.uuid,
    config: JSON.parse(r.config) as DomainConfig,
    state: r.state as DomainState,
    pid: r.pid,
    machineType: r.machine_type,
    accel: r.accel,
    startTime: r.start_time,
    runDir: r.run_dir,
    extra: JSON.parse(r.extra) as Record<string, unknown>,
  };
}

export interface StoreOptions {
  /** Events kept (xeno-event-limit): older ones are pruned as new ones come. */
  eventLimit?: number;
}

export class StateStore {
  private readonly db: Database.Database;
  /** Prepared statements by SQL text: compiling one costs more than running it (xeno list of 100 guests). */
  private readonly statements = new Map<string, Database.Statement>();
  private readonly eventLimit: number;
  private eventsFailing = false;

  constructor(file: string, opts: StoreOptions = {}) {
    this.eventLimit = opts.eventLimit ?? 10_000;
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(SCHEMA);
  }

  close(): void {
    this.statements.clear();
    this.db.close();
  }

  /** The statement for `text`, compiled once (the texts are the fixed ones below, and UPDATE's column sets). */
  private sql(text: string): Database.Statement {
    let st = this.statements.get(text);
    if (!st) {
      st = this.db.prepare(text);
      this.statements.set(text, st);
    }
    return st;
  }

  /** Next domain id: 1, 2, 3... never handed out twice. */
  allocateDomid(): number {
    return this.db.transaction(() => {
      const row = this.sql(`SELECT value FROM meta WHERE key = 'next_domid'`).get() as { value: string } | undefined;
      const id = row ? Number(row.value) : 1;
      this.sql(`INSERT INTO meta (key, value) VALUES ('next_domid', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`).run(String(id + 1));
      return id;
    })();
  }

  insert(d: DomainRecord): void {
    this.sql(
      `INSERT INTO domains (id, name, uuid, config, state, pid, machine_type, accel, start_time, run_dir, extra)
       VALUES (@id, @name, @uuid, @config, @state, @pid, @machineType, @accel, @startTime, @runDir, @extra)`,
    ).run({ ...d, config: JSON.stringify(d.config), extra: JSON.stringify(d.extra) });
  }

  update(id: number, patch: Partial<Omit<DomainRecord, 'id'>>): void {
    const cols: Record<string, string> = {
      name: 'name', uuid: 'uuid', config: 'config', state: 'state', pid: 'pid', machineType: 'machine_type',
      accel: 'accel', startTime: 'start_time', runDir: 'run_dir', extra: 'extra',
    };
    const sets: string[] = [];
    const values: Record<string, unknown> = { id };
    for (const [k, v] of Object.entries(patch)) {
      const col = cols[k];
      if (!col) continue;
      sets.push(`${col} = @${k}`);
      values[k] = k === 'config' || k === 'extra' ? JSON.stringify(v) : v;
    }
    if (sets.length) this.sql(`UPDATE domains SET ${sets.join(', ')} WHERE id = @id`).run(values);
  }

  remove(id: number): void {
    this.sql(`DELETE FROM domains WHERE id = ?`).run(id);
  }

  get(id: number): DomainRecord | undefined {
    const r = this.sql(`SELECT * FROM domains WHERE id = ?`).get(id) as Row | undefined;
    return r && fromRow(r);
  }

  byName(name: string): DomainRecord | undefined {
    const r = this.sql(`SELECT * FROM domains WHERE name = ?`).get(name) as Row | undefined;
    return r && fromRow(r);
  }

  all(): DomainRecord[] {
    return (this.sql(`SELECT * FROM domains ORDER BY id`).all() as Row[]).map(fromRow);
  }

  /**
   * Records an event and prunes the oldest beyond the limit. An event that cannot be stored (a full
   * disk) is dropped rather than failing what it reports: false, and the caller's log keeps it.
   */
  addEvent(domid: number | null, name: string | null, kind: string, message: string): boolean {
    try {
      const { lastInsertRowid } = this.sql(`INSERT INTO events (ts, domid, name, kind, message) VALUES (?, ?, ?, ?, ?)`)
        .run(Date.now() / 1000, domid, name, kind, message);
      this.sql(`DELETE FROM events WHERE seq <= ?`).run(Number(lastInsertRowid) - this.eventLimit);
      this.eventsFailing = false;
      return true;
    } catch {
      this.eventsFailing = true;
      return false;
    }
  }

  /** The last addEvent could not be stored. */
  get eventsLost(): boolean {
    return this.eventsFailing;
  }

  /** Events after `since` (seconds since the epoch), oldest first, at most `limit`. */
  eventsSince(since: number, limit = 1000): EventRecord[] {
    return this.sql(`SELECT * FROM events WHERE ts > ? ORDER BY seq LIMIT ?`).all(since, limit) as EventRecord[];
  }

  events(limit = 200): EventRecord[] {
    const rows = this.sql(`SELECT * FROM events ORDER BY seq DESC LIMIT ?`).all(limit) as EventRecord[];
    return rows.reverse();
  }
}
