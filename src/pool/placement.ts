/**
 * Where a pool guest starts: a live host (its host record is there: its lease is alive), not
 * disabled, with the guest's memory free, sharing no anti_affinity tag with a guest it runs; of
 * those, the one with the most free memory (ties by name). `--on HOST` must pass the same tests.
 */
import { XenoError } from '../common/errors.js';
import type { HostRecord, RunningRecord } from './member.js';

export interface PoolDefinition {
  name: string;
  /** The guest's config file as given to xeno new (parsed again where it starts). */
  cfgText: string;
  cfgFile?: string;
  /** The directory relative paths of cfgText are resolved against (on every host: a shared path). */
  cwd?: string;
  overrides?: string[];
  /** MiB the guest needs on its host (its maxmem). */
  maxmem: number;
  ha: boolean;
  haPriority: number;
  antiAffinity: string[];
  definedOn: string;
  /** ms since the epoch. */
  definedAt: number;
}

export interface PlacementInput {
  hosts: Map<string, HostRecord>;
  running: Map<string, RunningRecord>;
  defs: Map<string, PoolDefinition>;
}

/** Why `host` cannot take `def`, or null if it can. */
export function refusal(def: PoolDefinition, host: HostRecord | undefined, hostName: string, p: PlacementInput): string | null {
  if (!host) return `host ${hostName} is not up in the pool (no live host record)`;
  if (host.disabled) return `host ${hostName} is disabled (xeno host-enable ${hostName})`;
  if (host.memFreeKiB < def.maxmem * 1024) return `host ${hostName} has ${Math.floor(host.memFreeKiB / 1024)} MiB free, ${def.name} needs ${def.maxmem} MiB`;
  if (def.antiAffinity.length) {
    for (const [name, r] of p.running) {
      if (r.host !== hostName || name === def.name) continue;
      const shared = (p.defs.get(name)?.antiAffinity ?? []).filter((t) => def.antiAffinity.includes(t));
      if (shared.length) return `host ${hostName} runs ${name}, which shares anti_affinity tag ${shared.join(', ')}`;
    }
  }
  return null;
}

export function place(def: PoolDefinition, p: PlacementInput, on?: string): string {
  if (on !== undefined) {
    const why = refusal(def, p.hosts.get(on), on, p);
    if (why) throw new XenoError(p.hosts.has(on) && !p.hosts.get(on)!.disabled && why.includes('MiB') ? 'NO_MEMORY' : 'BAD_STATE', `cannot start ${def.name} on ${on}: ${why}`);
    return on;
  }
  const reasons: string[] = [];
  const fit = [...p.hosts.values()].filter((h) => {
    const why = refusal(def, h, h.name, p);
    if (why) reasons.push(why);
    return !why;
  });
  if (!fit.length) throw new XenoError('NO_MEMORY', `no host of the pool can start ${def.name}: ${reasons.join('; ') || 'no host is up'}`);
  fit.sort((a, b) => b.memFreeKiB - a.memFreeKiB || a.name.localeCompare(b.name));
  return fit[0]!.name;
}
