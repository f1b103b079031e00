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

/** Freezes a parsed JSON value all the way down: a stored config or extra is replaced, never edited. */
function deepFreeze<T>(v: T): T {
  if (v && typeof v === 'object' && !Object.isFrozen(v)) {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}

function fromRow(r: Row): DomainRecord {
  return {
    id: r.id,
    name: r.name,
    uuid: r.uuid,
    config: deepFreeze(JSON.parse(r.config) as DomainConfig),
    state: r.state as DomainState,
    pid: r.pid,
    machineType: r.machine_type,
    accel: r.accel,
    startTime: r.start_time,
    runDir: r.run_dir,
    extra: deepFreeze(JSON.parse(r.extra) as Record<string, unknown>),
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
  /**
   * The domains table as last written, parsed once: xenod is its only writer, and a list, a sampler
   * tick or a lookup then costs neither SQL nor JSON.parse (with 100 guests, most of a list's time).
   * Readers get a copy of the record; its config and extra are frozen and shared.
   */
  private cache?: Map<number, DomainRecord>;

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

  private domains(): Map<number, DomainRecord> {
    if (!this.cache) {
      this.cache = new Map();
      for (const r of this.sql(`SELECT * FROM domains ORDER BY id`).all() as Row[]) this.cache.set(r.id, fromRow(r));
    }
    return this.cache;
  }

  insert(d: DomainRecord): void {
    const config = JSON.stringify(d.config);
    const extra = JSON.stringify(d.extra);
    this.sql(
      `INSERT INTO domains (id, name, uuid, config, state, pid, machine_type, accel, start_time, run_dir, extra)
       VALUES (@id, @name, @uuid, @config, @state, @pid, @machineType, @accel, @startTime, @runDir, @extra)`,
    ).run({ ...d, config, extra });
    const cache = this.domains();
    cache.set(d.id, fromRow({ ...d, config, extra, machine_type: d.machineType, start_time: d.startTime, run_dir: d.runDir }));
    // kept in id order (as SELECT ... ORDER BY id gave it): an id below the last one puts it in its place
    if ([...cache.keys()].some((id) => id > d.id)) this.cache = new Map([...cache].sort((a, b) => a[0] - b[0]));
  }

  update(id: number, patch: Partial<Omit<DomainRecord, 'id'>>): void {
    const cols: Record<string, string> = {
      name: 'name', uuid: 'uuid', config: 'config', state: 'state', pid: 'pid', machineType: 'machine_type',
      accel: 'accel', startTime: 'start_time', runDir: 'run_dir', extra: 'extra',
    };
    const sets: string[] = [];
    const values: Record<string, unknown> = { id };
    const next: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(patch)) {
      const col = cols[k];
      if (!col) continue;
      sets.push(`${col} = @${k}`);
      values[k] = k === 'config' || k === 'extra' ? JSON.stringify(v) : v;
      next[k] = k === 'config' || k === 'extra' ? deepFreeze(JSON.parse(values[k] as string)) : v;
    }
    if (!sets.length) return;
    this.sql(`UPDATE domains SET ${sets.join(', ')} WHERE id = @id`).run(values);
    const cache = this.domains();
    const old = cache.get(id);
    if (old) cache.set(id, { ...old, ...next } as DomainRecord);
  }

  remove(id: number): void {
    this.sql(`DELETE FROM domains WHERE id = ?`).run(id);
    this.domains().delete(id);
  }

  get(id: number): DomainRecord | undefined {
    const r = this.domains().get(id);
    return r && { ...r };
  }

  byName(name: string): DomainRecord | undefined {
    for (const r of this.domains().values()) if (r.name === name) return { ...r };
    return undefined;
  }

  all(): DomainRecord[] {
    return Array.from(this.domains().values(), (r) => ({ ...r }));
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
