/**
 * Where the HA guests of a failed host go: pure. Guests by ha_restart_priority (highest first,
 * then name, so the order is stable), each placed on the live, enabled host with the most free
 * memory that fits it (memory counted down as guests are placed), keeping a guest off a host that
 * already runs a member of its anti-affinity group. A guest nowhere fits is listed with why.
 */

export interface PlanHost {
  name: string;
  memFreeKiB: number;
  disabled?: boolean;
  /** Names of the guests running there now. */
  guests: string[];
}

export interface PlanGuest {
  name: string;
  memoryMiB: number;
  priority: number;
  antiAffinity?: string[];
}

export interface Plan {
  moves: Array<{ name: string; host: string }>;
  stuck: Array<{ name: string; why: string }>;
}

export function planRestarts(guests: readonly PlanGuest[], hosts: readonly PlanHost[]): Plan {
  const free = new Map(hosts.filter((h) => !h.disabled).map((h) => [h.name, { kib: h.memFreeKiB, guests: new Set(h.guests) }]));
  const order = [...guests].sort((a, b) => b.priority - a.priority || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const plan: Plan = { moves: [], stuck: [] };
  for (const g of order) {
    const need = g.memoryMiB * 1024;
    let best: string | undefined;
    let bestKib = -1;
    let why = free.size === 0 ? 'no live, enabled host in the pool' : `no host has ${g.memoryMiB} MiB free`;
    for (const [name, h] of free) {
      if (g.antiAffinity?.some((o) => h.guests.has(o))) {
        why = `anti-affinity keeps it off every host with room`;
        continue;
      }
      if (h.kib >= need && h.kib > bestKib) {
        best = name;
        bestKib = h.kib;
      }
    }
    if (best === undefined) {
      plan.stuck.push({ name: g.name, why });
      continue;
    }
    const h = free.get(best)!;
    h.kib -= need;
    h.guests.add(g.name);
    plan.moves.push({ name: g.name, host: best });
  }
  return plan;
}
