/**
 * The keys of a guest config that are about the guest being *managed* (defined, started at boot),
 * not about the machine: autostart, autostart_order, autostart_delay. toDomainConfig() leaves them
 * alone; managedKeysOf() reads them. Pure.
 */
import { XenoError } from '../common/errors.js';
import type { XlCfgAst, XlEntry } from './xlcfg-parser.js';

// anti_affinity (pool-keys.ts) is a managed key too: about where a guest runs, not what it is. ha and
// ha_restart_priority are DomainConfig fields (the one validator checks them; poolKeysOf() reads them too).
export const MANAGED_KEYS = ['autostart', 'autostart_order', 'autostart_delay', 'anti_affinity'] as const;

export interface ManagedKeys {
  /** Start the guest when xenod starts after a boot. */
  autostart: boolean;
  /** Lower starts first; ties by name. */
  autostartOrder: number;
  /** Seconds to wait after starting this guest before the next one. */
  autostartDelay: number;
}

export const DEFAULT_MANAGED: ManagedKeys = { autostart: false, autostartOrder: 0, autostartDelay: 0 };

function intOf(e: XlEntry, file: string, min: number, max: number): number {
  const where = `${e.file ?? file}:${e.value.line}:${e.value.col}`;
  const v = e.value;
  const n = v.kind === 'number' ? v.value : v.kind === 'string' && /^\d+$/.test(v.value) ? Number(v.value) : NaN;
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new XenoError('CONFIG_INVALID', `${where}: key "${e.key}" expects a whole number between ${min} and ${max}`, { file: e.file ?? file, line: v.line, col: v.col });
  }
  return n;
}

/** The managed keys of a parsed config (defaults for the absent ones). */
export function managedKeysOf(ast: XlCfgAst, file: string = ast.file): ManagedKeys {
  const m: ManagedKeys = { ...DEFAULT_MANAGED };
  for (const e of ast.entries) {
    if (e.key === 'autostart') m.autostart = intOf(e, file, 0, 1) === 1;
    else if (e.key === 'autostart_order') m.autostartOrder = intOf(e, file, 0, 1_000_000);
    else if (e.key === 'autostart_delay') m.autostartDelay = intOf(e, file, 0, 3600);
  }
  return m;
}
