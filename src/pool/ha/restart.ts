/**
 * The leader's decision: which HA guests lost their host, and where they go. An HA guest is
 * orphaned when it has no `running/<name>` (its host's lease is gone, and its locks with it) and
 * its `ha/<name>` host is not live (no `hosts/<host>` record: that too went with the lease) or is
 * null (its host fenced it and gave it up). Orphans are placed by priority (planner.ts) and each
 * assignment is ONE txn guarded by the leader's key, the entry's mod revision and the absence of
 * `running/<name>`: a deposed leader, or a second decision on the same state, writes nothing.
 */
import type { Namespace } from 'etcd3';
import { planRestarts, type PlanGuest, type PlanHost } from './planner.js';

export const HA_PREFIX = 'ha/';

/** `P ha/<name>`: persistent; the HA guest is wanted running, last placed on `host`. */
export interface HaEntry {
  host: string | null;
  /** Set by the leader when it places the guest; cleared by the host that starts it. */
  assigned: boolean;
  epoch: number;
  why?: string;
  /** Set by a xenod stopping on purpose while the guest runs on: not to be restarted elsewhere. */
  held?: boolean;
}

export interface HaGuestInfo {
  name: string;
  memoryMiB: number;
  priority: number;
  antiAffinity?: string[];
}

export interface PlacementResult {
  assigned: Array<{ name: string; host: string; from: string | null }>;
  stuck: Array<{ name: string; why: string }>;
}

export async function placeOrphans(
  ns: Namespace,
  guard: { key: string; createRevision: number },
  infoOf: (name: string) => Promise<HaGuestInfo | undefined>,
): Promise<PlacementResult> {
  const [hostsR, runR, haR] = await Promise.all([ns.getAll().prefix('hosts/').strings(), ns.getAll().prefix('running/').strings(), ns.getAll().prefix(HA_PREFIX).exec()]);
  const live = new Map(Object.entries(hostsR).map(([k, v]) => [k.slice('hosts/'.length), JSON.parse(v) as { memFreeKiB?: number; disabled?: boolean }]));
  const running = new Map(Object.entries(runR).map(([k, v]) => [k.slice('running/'.length), (JSON.parse(v) as { host: string }).host]));
  const orphans: Array<PlanGuest & { entry: HaEntry; mod: string }> = [];
  for (const kv of haR.kvs) {
    const name = kv.key.toString().split(HA_PREFIX).pop()!;
    const entry = JSON.parse(kv.value.toString()) as HaEntry;
    if (running.has(name) || entry.held) continue;
    if (entry.host !== null && live.has(entry.host)) continue; // its host is alive: its own business
    const info = await infoOf(name);
    if (info) orphans.push({ ...info, entry, mod: kv.mod_revision });
  }
  const out: PlacementResult = { assigned: [], stuck: [] };
  if (orphans.length === 0) return out;
  const hosts: PlanHost[] = [...live].map(([name, h]) => ({
    name,
    memFreeKiB: h.memFreeKiB ?? 0,
    disabled: h.disabled,
    guests: [...running].filter(([, on]) => on === name).map(([g]) => g),
  }));
  const plan = planRestarts(orphans, hosts);
  out.stuck = plan.stuck;
  await Promise.all(
    plan.moves.map(async (m) => {
      const o = orphans.find((x) => x.name === m.name)!;
      const next: HaEntry = { host: m.host, assigned: true, epoch: o.entry.epoch + 1 };
      const r = await ns
        .if(guard.key, 'Create', '==', guard.createRevision)
        .and(HA_PREFIX + m.name, 'Mod', '==', Number(o.mod))
        .and(`running/${m.name}`, 'Create', '==', 0)
        .then(ns.put(HA_PREFIX + m.name).value(JSON.stringify(next)))
        .commit();
      if (r.succeeded) out.assigned.push({ name: m.name, host: m.host, from: o.entry.host });
    }),
  );
  return out;
}
