/**
 * xenod's one sampler: every second, one loop samples the host and every domain into compact
 * ring buffers (metrics/ring.ts). QMP queries of all domains go out together and the tick waits
 * for them only until a deadline: a stuck QEMU keeps its last figures and never stalls the tick,
 * and never gets a second query piled on the first. Nothing is written to disk per sample.
 * `xeno top`, GET /v1/stats and the Prometheus endpoint all read from here, so they agree.
 */
import type { Toolstack } from '../toolstack/toolstack.js';
import type { DomainRecord } from '../toolstack/store.js';
import { stateFlags, type DomainState } from '../model/domain-state.js';
import type { DomainSample, HostSample, NetSample, VbdSample } from '../model/stats.js';
import { DEFAULT_TIERS, TieredSeries, type Fold, type TierSizes } from './ring.js';
import { hostCpuTimes, netSamples, qmpFigures, vbdSamples, vcpuTime, type QmpFigures } from './probes.js';

const MB = 1024 * 1024;
export const STATES: readonly DomainState[] = ['starting', 'running', 'paused', 'shutdown', 'crashed', 'dying', 'saving', 'migrating'];

/** Domain columns: state code (index*2 + executing), cpuSec, cpuPct, memTarget, memActual, maxmem, vcpus. */
const DOMAIN_FOLDS: readonly Fold[] = ['last', 'last', 'mean', 'last', 'last', 'last', 'last'];
/** Device columns: four counters (rx/rd bytes, tx/wr bytes, rx/rd count, tx/wr count). */
const DEVICE_FOLDS: readonly Fold[] = ['last', 'last', 'last', 'last'];
/** Host columns: cpuPct, freeMem, totalMem. */
const HOST_FOLDS: readonly Fold[] = ['mean', 'last', 'last'];

export interface DomainTrack {
  id: number;
  uuid: string;
  name: string;
  type: string;
  series: TieredSeries;
  nets: Map<string, TieredSeries>;
  vbds: Map<string, TieredSeries>;
  lastCpu?: { t: number; sec: number };
  qmp: QmpFigures;
  /** A QMP query of an earlier tick still unanswered: no new one until it ends. */
  inflight: boolean;
}

export interface SamplerOptions {
  intervalMs?: number;
  /** How long a tick waits for QMP answers. */
  qmpDeadlineMs?: number;
  tiers?: TierSizes;
}

/**
 * A tick of many domains gives way to waiting API requests every this many domains, so that a list
 * issued during a tick waits for a slice of it, not for all of it.
 */
const YIELD_EVERY = 16;
const yieldToRequests = () => new Promise<void>((r) => setImmediate(r));

const nullIfNaN = (v: number): number | null => (Number.isNaN(v) ? null : v);

export class Sampler {
  readonly host: TieredSeries;
  readonly domains = new Map<number, DomainTrack>();
  private timer?: NodeJS.Timeout;
  private lastHostCpu?: { busy: number; total: number };
  private stopped = false;
  /** ms the last tick took (the benchmark reads it). */
  lastTickMs = 0;
  ticks = 0;
  private readonly intervalMs: number;
  private readonly qmpDeadlineMs: number;
  private readonly tiers: TierSizes;

  constructor(private readonly toolstack: Toolstack, opts: SamplerOptions = {}) {
    this.intervalMs = opts.intervalMs ?? 1000;
    this.qmpDeadlineMs = opts.qmpDeadlineMs ?? 300;
    this.tiers = opts.tiers ?? DEFAULT_TIERS;
    this.host = new TieredSeries(HOST_FOLDS, this.tiers);
  }

  start(): void {
    this.stopped = false;
    const loop = async () => {
      try {
        await this.tick();
      } catch (e) {
        this.toolstack.deps.log.warn({ err: e }, 'sampler tick failed');
      }
      if (this.stopped) return;
      // aligned to the interval so samples of all domains share whole-second times
      const wait = this.intervalMs - (Date.now() % this.intervalMs);
      this.timer = setTimeout(() => void loop(), wait);
      this.timer.unref();
    };
    void loop();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private trackOf(rec: DomainRecord): DomainTrack {
    let tr = this.domains.get(rec.id);
    if (!tr || tr.uuid !== rec.uuid) {
      tr = {
        id: rec.id, uuid: rec.uuid, name: rec.name, type: rec.config.type,
        series: new TieredSeries(DOMAIN_FOLDS, this.tiers), nets: new Map(), vbds: new Map(), qmp: {}, inflight: false,
      };
      this.domains.set(rec.id, tr);
    }
    tr.name = rec.name;
    return tr;
  }

  private liveVm(rec: DomainRecord) {
    try {
      const l = this.toolstack.liveOf(rec);
      return l.vm.exited ? undefined : l;
    } catch {
      return undefined;
    }
  }

  /** One sample of everything. */
  async tick(): Promise<void> {
    const t0 = performance.now();
    const recs = this.toolstack.deps.store.all();
    const seen = new Set<number>([0]);
    const queries: Promise<void>[] = [];
    let n = 0;
    for (const rec of recs) {
      if (++n % YIELD_EVERY === 0) await yieldToRequests();
      seen.add(rec.id);
      const tr = this.trackOf(rec);
      const live = this.liveVm(rec);
      if (!live || tr.inflight) continue;
      tr.inflight = true;
      queries.push(
        qmpFigures(live.vm, 10_000, { blockstats: rec.config.disks.length > 0 }).then((f) => {
          if (f.balloonActual !== undefined) tr.qmp.balloonActual = f.balloonActual;
          tr.qmp.blockstats = f.blockstats ?? (rec.config.disks.length > 0 ? tr.qmp.blockstats : undefined);
          tr.inflight = false;
        }),
      );
    }
    for (const id of this.domains.keys()) if (!seen.has(id)) this.domains.delete(id);
    let deadline: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(queries), new Promise<void>((r) => (deadline = setTimeout(r, this.qmpDeadlineMs)))]);
    clearTimeout(deadline);

    const t = Math.round(Date.now()) / 1000;
    let guestSec = 0;
    n = 0;
    for (const rec of recs) {
      if (++n % YIELD_EVERY === 0) await yieldToRequests();
      guestSec += this.sampleDomain(t, rec);
    }
    this.sampleHost(t, guestSec, recs);
    this.ticks++;
    this.lastTickMs = performance.now() - t0;
  }

  /** The host, and Domain-0 as xentop shows it: the host's busy time less its guests' vcpus. */
  private sampleHost(t: number, guestSec: number, recs: DomainRecord[]): void {
    const cpu = hostCpuTimes();
    const prev = this.lastHostCpu;
    const pct = prev && cpu.total > prev.total ? ((cpu.busy - prev.busy) / (cpu.total - prev.total)) * 100 : NaN;
    this.lastHostCpu = cpu;
    const acc = this.toolstack.memoryAccount(undefined, recs);
    this.host.push(t, [pct, acc.free * MB, acc.total * MB]);
    const d0 = this.toolstack.domain0(recs);
    let tr = this.domains.get(0);
    if (!tr) {
      tr = { id: 0, uuid: d0.uuid, name: d0.name, type: 'host', series: new TieredSeries(DOMAIN_FOLDS, this.tiers), nets: new Map(), vbds: new Map(), qmp: {}, inflight: false };
      this.domains.set(0, tr);
    }
    const sec = Math.max(tr.lastCpu?.sec ?? 0, cpu.busy - guestSec); // a guest gone only raises it
    const d0pct = tr.lastCpu && t > tr.lastCpu.t ? ((sec - tr.lastCpu.sec) / (t - tr.lastCpu.t)) * 100 : NaN;
    tr.lastCpu = { t, sec };
    tr.series.push(t, [STATES.indexOf('running') * 2 + 1, sec, d0pct, d0.memory * MB, d0.memory * MB, d0.maxmem * MB, d0.vcpus]);
  }

  /** Returns the domain's vcpu seconds (0 when it does not run). */
  private sampleDomain(t: number, rec: DomainRecord): number {
    const tr = this.trackOf(rec);
    const live = this.liveVm(rec);
    let sec = tr.lastCpu?.sec ?? 0;
    let executing = false;
    let pct = NaN;
    if (live && rec.pid) {
      const c = vcpuTime(rec.pid, live.vcpuTids);
      sec = c.sec;
      executing = c.executing;
      if (tr.lastCpu && t > tr.lastCpu.t) pct = Math.max(0, ((sec - tr.lastCpu.sec) / (t - tr.lastCpu.t)) * 100);
      tr.lastCpu = { t, sec };
    } else {
      tr.lastCpu = undefined;
      tr.qmp = {};
    }
    const code = Math.max(0, STATES.indexOf(rec.state)) * 2 + (executing ? 1 : 0);
    const vcpus = live ? live.vcpuTids.length : rec.config.vcpus;
    tr.series.push(t, [code, sec, pct, rec.config.memory * MB, tr.qmp.balloonActual ?? NaN, rec.config.maxmem * MB, vcpus]);
    if (!live) return 0;
    for (const n of netSamples(rec.id, rec.config)) pushDevice(tr.nets, n.vif, t, [n.rxBytes, n.txBytes, n.rxPackets, n.txPackets], this.tiers);
    for (const b of vbdSamples(tr.qmp.blockstats ?? [], rec.config)) pushDevice(tr.vbds, b.vdev, t, [b.rdBytes, b.wrBytes, b.rdReqs, b.wrReqs], this.tiers);
    return sec;
  }
}

function pushDevice(map: Map<string, TieredSeries>, key: string, t: number, values: number[], tiers: TierSizes): void {
  let s = map.get(key);
  if (!s) map.set(key, (s = new TieredSeries(DEVICE_FOLDS, tiers)));
  s.push(t, values);
}

// ---- reading back --------------------------------------------------------------------------

export function hostSampleOf(row: number[]): HostSample {
  return { t: row[0]!, cpuPct: nullIfNaN(row[1]!), freeMem: row[2]!, totalMem: row[3]! };
}

/** Domain rows joined with the device rows of the same time. */
export function domainSamplesOf(tr: DomainTrack, since: number, step: number): DomainSample[] {
  const byTime = <T>(map: Map<string, TieredSeries>, make: (key: string, r: number[]) => T) => {
    const out = new Map<number, T[]>();
    for (const [key, s] of map) {
      for (const r of s.query(since, step)) {
        const list = out.get(r[0]!) ?? [];
        list.push(make(key, r));
        out.set(r[0]!, list);
      }
    }
    return out;
  };
  const nets = byTime<NetSample>(tr.nets, (vif, r) => ({ vif, rxBytes: r[1]!, txBytes: r[2]!, rxPackets: r[3]!, txPackets: r[4]! }));
  const vbds = byTime<VbdSample>(tr.vbds, (vdev, r) => ({ vdev, rdBytes: r[1]!, wrBytes: r[2]!, rdReqs: r[3]!, wrReqs: r[4]! }));
  return tr.series.query(since, step).map((r) => {
    const state = STATES[Math.floor(r[1]! / 2)] ?? 'running';
    return {
      t: r[0]!,
      state,
      flags: stateFlags(state, r[1]! % 2 === 1),
      cpuSec: Math.round(r[2]! * 100) / 100,
      cpuPct: nullIfNaN(r[3]!),
      memTarget: r[4]!,
      memActual: nullIfNaN(r[5]!),
      maxmem: r[6]!,
      vcpus: r[7]!,
      nets: nets.get(r[0]!) ?? [],
      vbds: vbds.get(r[0]!) ?? [],
    };
  });
}

/** The newest tick: the host's sample and each domain's sample of that same time. */
export function latestSamples(sampler: Sampler): { host: HostSample; domains: Array<{ track: DomainTrack; sample: DomainSample }> } | undefined {
  const h = sampler.host.newest();
  if (!h) return undefined;
  const t = h[0]!;
  const domains: Array<{ track: DomainTrack; sample: DomainSample }> = [];
  for (const track of [...sampler.domains.values()].sort((a, b) => a.id - b.id)) {
    const sample = domainSamplesOf(track, t - 0.0005, 0).find((s) => s.t === t);
    if (sample) domains.push({ track, sample });
  }
  return { host: hostSampleOf(h), domains };
}
