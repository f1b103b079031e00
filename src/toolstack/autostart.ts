/**
 * Guests started when xenod starts for the first time after a host boot (xendomains' start):
 * definitions with `autostart = 1`, and the configs linked in the auto dir (/etc/xeno/auto), in
 * `autostart_order` (then name), waiting `autostart_delay` seconds after each. "First time after a
 * boot" is a marker next to the socket, in /run (a tmpfs the boot empties): restarting xenod does
 * not resurrect guests the admin shut down.
 */
import { existsSync, readdirSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { errorMessage } from '../common/errors.js';
import { managedKeysOf, type ManagedKeys } from '../config/managed-keys.js';
import { parseXlCfg, readConfigFile, toDomainConfig } from '../config/index.js';
import type { DomainConfig } from '../model/domain-config.js';
import type { Definitions } from './definitions.js';
import type { Toolstack } from './toolstack.js';

export interface AutostartEntry {
  name: string;
  config: DomainConfig;
  managed: ManagedKeys;
  /** `definition`, or the file in the auto dir. */
  source: string;
}

export interface AutostartResult {
  name: string;
  ok: boolean;
  message: string;
}

/** The marker of this boot's autostart: beside the socket, so each daemon (socket) has its own. */
export function autostartMarker(unixPath: string): string {
  return `${unixPath}.autostarted`;
}

/** The configs in the auto dir (links or files ending .cfg or without a dot), parsed; bad ones reported. */
export function autoDirEntries(dir: string, warn: (m: string) => void): AutostartEntry[] {
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => !n.startsWith('.')).sort();
  } catch {
    return [];
  }
  const out: AutostartEntry[] = [];
  for (const n of names) {
    const file = path.join(dir, n);
    try {
      if (!statSync(file).isFile()) continue;
      // Relative paths inside a linked config are relative to where the config really is.
      const real = realpathSync(file);
      const ast = parseXlCfg(readConfigFile(real), real);
      const config = toDomainConfig(ast, real, warn, { baseDir: path.dirname(real) });
      // Linked in the auto dir means "start at boot", whatever the file's own autostart says.
      out.push({ name: config.name, config, managed: { ...managedKeysOf(ast), autostart: true }, source: file });
    } catch (e) {
      warn(`autostart: ${file}: ${errorMessage(e)}`);
    }
  }
  return out;
}

/** What to start, in order: definitions with autostart, then the auto dir (a definition wins a name). */
export function autostartPlan(defs: Definitions, autoDir: string | null, warn: (m: string) => void): AutostartEntry[] {
  const byName = new Map<string, AutostartEntry>();
  for (const d of defs.list()) {
    if (!d.autostart) continue;
    byName.set(d.name, { name: d.name, config: d.config, managed: d, source: 'definition' });
  }
  for (const e of autoDir ? autoDirEntries(autoDir, warn) : []) if (!byName.has(e.name)) byName.set(e.name, e);
  return [...byName.values()].sort((a, b) => a.managed.autostartOrder - b.managed.autostartOrder || a.name.localeCompare(b.name));
}

/**
 * Start the plan's guests that do not run yet. Once per boot unless `force`; a guest that fails to
 * start is reported and the others still start.
 */
export async function runAutostart(
  ts: Toolstack,
  defs: Definitions,
  opts: { autoDir: string | null; unixPath: string; log: Logger; force?: boolean },
): Promise<AutostartResult[]> {
  const marker = autostartMarker(opts.unixPath);
  if (!opts.force && existsSync(marker)) {
    opts.log.info(`autostart: already done since this boot (${marker})`);
    return [];
  }
  writeFileSync(marker, `${new Date().toISOString()}\n`);
  const results: AutostartResult[] = [];
  const plan = autostartPlan(defs, opts.autoDir, (m) => opts.log.warn(m));
  for (const e of plan) {
    if (ts.deps.store.byName(e.name)) {
      results.push({ name: e.name, ok: true, message: 'already running' });
      continue;
    }
    try {
      const rec = await ts.create(e.config);
      ts.event(rec, 'autostart', `${e.name} autostarted as domain ${rec.id} (order ${e.managed.autostartOrder}, from ${e.source})`);
      results.push({ name: e.name, ok: true, message: `started as domain ${rec.id}` });
    } catch (err) {
      ts.event(null, 'autostart-failed', `autostart of ${e.name} (from ${e.source}) failed: ${errorMessage(err)}`);
      results.push({ name: e.name, ok: false, message: errorMessage(err) });
      continue;
    }
    if (e.managed.autostartDelay > 0) await new Promise((r) => setTimeout(r, e.managed.autostartDelay * 1000));
  }
  return results;
}
