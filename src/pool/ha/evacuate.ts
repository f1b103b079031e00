/**
 * host-evacuate: every guest of a host live-migrated to the others, by the pool's placement (free
 * memory counted down as guests are placed, anti_affinity, disabled hosts skipped), up to `parallel`
 * at a time. A guest that cannot move is listed with why (no host fits, or its migration failed: it
 * then keeps running where it was). Pure planning plus an executor given the migrate function.
 */
import { errorMessage } from '../../common/errors.js';
import type { HostRecord, RunningRecord } from '../member.js';
import { place, type PoolDefinition } from '../placement.js';

export interface EvacuationMove {
  name: string;
  to: string;
}

export interface EvacuationResult {
  moved: Array<EvacuationMove & { seconds: number }>;
  stuck: Array<{ name: string; why: string }>;
}

/** Targets for each guest of `from`, biggest first (they are the hardest to fit). */
export function planEvacuation(
  from: string,
  guests: Array<{ name: string; maxmem: number }>,
  hosts: Map<string, HostRecord>,
  running: Map<string, RunningRecord>,
  defs: Map<string, PoolDefinition>,
): { moves: EvacuationMove[]; stuck: Array<{ name: string; why: string }> } {
  const others = new Map([...hosts].filter(([n]) => n !== from).map(([n, h]) => [n, { ...h }]));
  const run = new Map(running);
  const moves: EvacuationMove[] = [];
  const stuck: Array<{ name: string; why: string }> = [];
  for (const g of [...guests].sort((a, b) => b.maxmem - a.maxmem || a.name.localeCompare(b.name))) {
    const def: PoolDefinition = defs.get(g.name) ?? { name: g.name, cfgText: '', maxmem: g.maxmem, ha: false, haPriority: 0, antiAffinity: [], definedOn: from, definedAt: 0 };
    try {
      const to = place({ ...def, maxmem: g.maxmem }, { hosts: others, running: run, defs });
      moves.push({ name: g.name, to });
      others.get(to)!.memFreeKiB -= g.maxmem * 1024;
      run.set(g.name, { host: to, domid: -1, since: 0 });
    } catch (e) {
      stuck.push({ name: g.name, why: errorMessage(e) });
    }
  }
  return { moves, stuck };
}

/** Runs the moves, `parallel` at a time; a failed migration leaves the guest where it was. */
export async function runEvacuation(
  plan: { moves: EvacuationMove[]; stuck: Array<{ name: string; why: string }> },
  parallel: number,
  migrate: (m: EvacuationMove) => Promise<void>,
): Promise<EvacuationResult> {
  const out: EvacuationResult = { moved: [], stuck: [...plan.stuck] };
  const queue = [...plan.moves];
  await Promise.all(
    Array.from({ length: Math.max(1, parallel) }, async () => {
      for (let m = queue.shift(); m; m = queue.shift()) {
        const t0 = performance.now();
        try {
          await migrate(m);
          out.moved.push({ ...m, seconds: Math.round((performance.now() - t0) / 100) / 10 });
        } catch (e) {
          out.stuck.push({ name: m.name, why: `migration to ${m.to} failed: ${errorMessage(e)}` });
        }
      }
    }),
  );
  return out;
}
