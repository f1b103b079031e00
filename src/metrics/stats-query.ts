/** The answer of GET /v1/stats: the sampler's rows in a window, with the event log's markers. */
import { XenoError } from '../common/errors.js';
import type { StatsResponse } from '../model/stats.js';
import type { Toolstack } from '../toolstack/toolstack.js';
import { domainSamplesOf, hostSampleOf, type Sampler } from './sampler.js';

export interface StatsQuery {
  /** Domain name or id; all domains (Domain-0 included) when absent. */
  dom?: string;
  /** Seconds since the epoch; a negative number counts back from now; default -60. */
  since?: number;
  /** Seconds between samples; 0 (default) = as stored (1 s, or 1 min beyond the fine tier). */
  step?: number;
}

export function statsQuery(sampler: Sampler, toolstack: Toolstack, q: StatsQuery): StatsResponse {
  const now = Date.now() / 1000;
  const sinceArg = q.since ?? -60;
  const since = sinceArg < 0 ? now + sinceArg : sinceArg;
  const step = q.step ?? 0;
  if (!Number.isFinite(since) || !Number.isFinite(step) || step < 0) throw new XenoError('BAD_REQUEST', 'since and step must be numbers, step >= 0');
  let ids: number[] | undefined;
  if (q.dom !== undefined) ids = [q.dom === '0' || q.dom === 'Domain-0' ? 0 : toolstack.resolve(q.dom).id];
  const hostRows = sampler.host.query(since, step);
  const domains = [...sampler.domains.values()]
    .filter((tr) => !ids || ids.includes(tr.id))
    .sort((a, b) => a.id - b.id)
    .map((tr) => ({ id: tr.id, name: tr.name, uuid: tr.uuid, type: tr.type, samples: domainSamplesOf(tr, since, step) }));
  const events = toolstack.deps.store.eventsSince(since).filter((e) => !ids || (e.domid !== null && ids.includes(e.domid)));
  const tiers = sampler.host.tiers;
  const stored = sampler.host.fine.oldestTime() !== undefined && since >= sampler.host.fine.oldestTime()! && step < tiers.coarseStep ? tiers.fineStep : tiers.coarseStep;
  return { step: Math.max(step, stored), host: { samples: hostRows.map(hostSampleOf) }, domains, events };
}
