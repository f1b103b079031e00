/**
 * Managed guests (xm new / start / delete): a definition is a guest's config kept by xenod whether
 * the guest runs or not. They live in their own table of xenod's database (a second connection to
 * the same SQLite file, WAL mode), so the domain store stays the record of what runs.
 */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { LazyDb } from './lazy-db.js';
import { XenoError } from '../common/errors.js';
import type { ManagedKeys } from '../config/managed-keys.js';
import type { DomainDefinition } from '../model/definition.js';
import type { DomainConfig } from '../model/domain-config.js';
import { DOMAIN_NAME_RE } from '../model/domain-config.js';
import type { DomainRecord } from './store.js';
import type { Toolstack } from './toolstack.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS definitions (
  name TEXT PRIMARY KEY,
  config TEXT NOT NULL,
  autostart INTEGER NOT NULL DEFAULT 0,
  autostart_order INTEGER NOT NULL DEFAULT 0,
  autostart_delay INTEGER NOT NULL DEFAULT 0,
  defined_at REAL NOT NULL
);
`;

interface Row {
  name: string;
  config: string;
  autostart: number;
  autostart_order: number;
  autostart_delay: number;
  defined_at: number;
}

function fromRow(r: Row): DomainDefinition {
  return {
    name: r.name, config: JSON.parse(r.config) as DomainConfig, autostart: r.autostart === 1,
    autostartOrder: r.autostart_order, autostartDelay: r.autostart_delay, definedAt: r.defined_at,
  };
}

/** Opened on first use (LazyDb): building the API (e.g. for its documentation) touches no file. */
export class DefinitionStore extends LazyDb {
  constructor(file: () => string) {
    super(file, SCHEMA);
  }

  /** Insert or replace. */
  put(d: DomainDefinition): void {
    this.db
      .prepare(
        `INSERT INTO definitions (name, config, autostart, autostart_order, autostart_delay, defined_at)
         VALUES (@name, @config, @autostart, @autostartOrder, @autostartDelay, @definedAt)
         ON CONFLICT(name) DO UPDATE SET config = excluded.config, autostart = excluded.autostart,
           autostart_order = excluded.autostart_order, autostart_delay = excluded.autostart_delay, defined_at = excluded.defined_at`,
      )
      .run({ ...d, config: JSON.stringify(d.config), autostart: d.autostart ? 1 : 0 });
  }

  get(name: string): DomainDefinition | undefined {
    const r = this.db.prepare(`SELECT * FROM definitions WHERE name = ?`).get(name) as Row | undefined;
    return r && fromRow(r);
  }

  remove(name: string): boolean {
    return this.db.prepare(`DELETE FROM definitions WHERE name = ?`).run(name).changes > 0;
  }

  all(): DomainDefinition[] {
    return (this.db.prepare(`SELECT * FROM definitions ORDER BY name`).all() as Row[]).map(fromRow);
  }
}

/** xm's new / start / delete on top of the toolstack. */
export class Definitions {
  constructor(
    readonly store: DefinitionStore,
    private readonly ts: Toolstack,
  ) {}

  private running(name: string): DomainRecord | undefined {
    return this.ts.deps.store.byName(name);
  }

  /** `xeno new CFG`: store (or replace) a definition; nothing starts. */
  define(raw: DomainConfig, managed: ManagedKeys): DomainDefinition {
    const config = this.ts.validateConfig(raw); // the one validator every door goes through
    if (!DOMAIN_NAME_RE.test(config.name) || config.name === 'Domain-0') {
      throw new XenoError('INVALID_NAME', `invalid domain name '${config.name}': use 1-64 characters of [A-Za-z0-9_.-]`);
    }
    for (const [what, file] of [['kernel', config.kernel], ['ramdisk', config.ramdisk], ...config.disks.map((d) => [`disk ${d.vdev}`, d.target] as const)] as const) {
      if (file && !existsSync(file)) throw new XenoError('NO_SUCH_FILE', `${what}: ${file} does not exist`);
    }
    // A defined guest keeps one identity across its starts, as in xm.
    const def: DomainDefinition = { name: config.name, config: { ...config, uuid: config.uuid ?? randomUUID() }, ...managed, definedAt: Date.now() / 1000 };
    this.store.put(def);
    this.ts.event(null, 'define', `${config.name} defined${managed.autostart ? ` (autostart, order ${managed.autostartOrder})` : ''}`);
    return def;
  }

  /** `xeno new NAME` of a guest started with `create`: keep its current (running) config. */
  keep(dom: string, managed: ManagedKeys): DomainDefinition {
    const rec = this.ts.resolve(dom);
    return this.define({ ...rec.config, uuid: rec.uuid }, managed);
  }

  get(name: string): DomainDefinition {
    const d = this.store.get(name);
    if (!d) throw new XenoError('NO_SUCH_DOMAIN', `no guest named '${name}' is defined (xeno new CFG defines one)`);
    return d;
  }

  /** `xeno start NAME`: a domain from the definition. */
  async start(name: string, opts: { paused?: boolean } = {}): Promise<DomainRecord> {
    const def = this.get(name);
    const rec = this.running(name);
    if (rec) throw new XenoError('DOMAIN_EXISTS', `${name} already runs (domain ${rec.id}, ${rec.state})`);
    return this.ts.create(def.config, { paused: opts.paused });
  }

  /** `xeno delete NAME`: forget the definition; refused while the guest runs. Disks are kept. */
  delete(name: string): void {
    this.get(name);
    const rec = this.running(name);
    if (rec) throw new XenoError('BAD_STATE', `cannot delete ${name}: it runs as domain ${rec.id} (${rec.state}); shut it down first`);
    this.store.remove(name);
    this.ts.event(null, 'undefine', `${name}: definition deleted (its disks are untouched)`);
  }

  list(): DomainDefinition[] {
    return this.store.all();
  }
}
