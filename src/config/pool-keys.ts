/**
 * The keys of a guest config about its life in a pool (docs/pool.md): anti_affinity (tags: two
 * guests sharing one are never placed on the same host), ha and ha_restart_priority (restart elsewhere
 * when its host is lost, docs/pool-ha.md). toDomainConfig() leaves them alone (they are listed in
 * MANAGED_KEYS); poolKeysOf() reads them. Pure.
 */
import { XenoError } from '../common/errors.js';
import type { XlCfgAst, XlEntry } from './xlcfg-parser.js';

export const POOL_GUEST_KEYS = ['anti_affinity', 'ha', 'ha_restart_priority'] as const;

export interface PoolGuestKeys {
  antiAffinity: string[];
  ha: boolean;
  haPriority: number;
}

const TAG_RE = /^[A-Za-z0-9_.-]{1,64}$/;

function fail(e: XlEntry, file: string, msg: string): never {
  const where = `${e.file ?? file}:${e.value.line}:${e.value.col}`;
  throw new XenoError('CONFIG_INVALID', `${where}: key "${e.key}" ${msg}`, { file: e.file ?? file, line: e.value.line, col: e.value.col });
}

function intOf(e: XlEntry, file: string, min: number, max: number): number {
  const v = e.value;
  const n = v.kind === 'number' ? v.value : v.kind === 'string' && /^\d+$/.test(v.value) ? Number(v.value) : NaN;
  if (!Number.isInteger(n) || n < min || n > max) fail(e, file, `expects a whole number between ${min} and ${max}`);
  return n;
}

function tagsOf(e: XlEntry, file: string): string[] {
  const v = e.value;
  const items = v.kind === 'list' ? v.items : [v];
  const tags = items.map((i) => (i.kind === 'string' ? i.value : fail(e, file, 'expects a list of tags, e.g. [ "db" ]')));
  for (const t of tags) if (!TAG_RE.test(t)) fail(e, file, `tag "${t}" is not 1-64 characters of [A-Za-z0-9_.-]`);
  return [...new Set(tags)];
}

export function poolKeysOf(ast: XlCfgAst, file: string = ast.file): PoolGuestKeys {
  const k: PoolGuestKeys = { antiAffinity: [], ha: false, haPriority: 0 };
  for (const e of ast.entries) {
    if (e.key === 'anti_affinity') k.antiAffinity = tagsOf(e, file);
    else if (e.key === 'ha') k.ha = intOf(e, file, 0, 1) === 1;
    else if (e.key === 'ha_restart_priority') k.haPriority = intOf(e, file, 0, 1000);
  }
  return k;
}
