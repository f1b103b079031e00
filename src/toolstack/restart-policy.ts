/**
 * Restarts asked by a guest (on_reboot / on_crash = restart), guarded against restart storms as xend
 * refused "the domain has been restarting too fast":
 *
 * - Restarts are remembered for `xeno-restart-window` seconds (default 60). The first one in that
 *   window happens at once; each further one waits 1 s, 2 s, 4 s ... (at most BACKOFF_CAP_S = 60 s).
 * - Once `xeno-restart-limit` restarts (default 5; a guest's `restart_limit` overrides it; 0 = no
 *   limit) lie within the window, the domain is left stopped instead (`crashed` after a crash,
 *   `shutdown` otherwise, its QEMU kept frozen for inspection), with an event and a warning that say
 *   how many restarts happened in how long and where to look (console log, QEMU log).
 *
 * The history lives in the domain's record (extra.restarts), so a restarted xenod keeps counting and
 * honours a restart that was due: the back-off is never reset by a re-adoption. An admin's
 * `xeno reboot` of a stopped domain starts afresh.
 */
import path from 'node:path';
import type { GuestStopReason } from '../hypervisor/backend.js';
import type { DomainRecord } from './store.js';
import type { Toolstack } from './toolstack.js';

export const RESTARTS_KEY = 'restarts';
export const BACKOFF_CAP_S = 60;

export interface RestartHistory {
  /** Restarts xenod made for the guest since it was created. */
  total: number;
  /** Epoch seconds of the restarts still within the window, oldest first. */
  recent: number[];
  lastReason?: GuestStopReason;
  /** Epoch seconds of the last restart. */
  lastAt?: number;
  /** A delayed restart is due at this epoch second (the domain waits, stopped, until then). */
  dueAt?: number;
  dueReason?: GuestStopReason;
  /** Set once the limit left the domain stopped: the message that said why. */
  stopped?: string;
}

export function historyOf(rec: Pick<DomainRecord, 'extra'>): RestartHistory {
  const h = rec.extra?.[RESTARTS_KEY] as Partial<RestartHistory> | undefined;
  return { ...h, total: h?.total ?? 0, recent: Array.isArray(h?.recent) ? h.recent : [] };
}

export type RestartDecision =
  | { kind: 'now' }
  | { kind: 'later'; delayS: number }
  | { kind: 'stop'; count: number; spanS: number };

/** Pure: what to do with a restart asked at nowS, given the history, the limit (0 = none) and the window. */
export function decideRestart(h: RestartHistory, nowS: number, limit: number, windowS: number): RestartDecision {
  const recent = h.recent.filter((t) => nowS - t < windowS);
  if (limit > 0 && recent.length >= limit) return { kind: 'stop', count: recent.length, spanS: Math.max(0, nowS - recent[0]!) };
  if (recent.length === 0) return { kind: 'now' };
  return { kind: 'later', delayS: Math.min(BACKOFF_CAP_S, 2 ** (recent.length - 1)) };
}

/** The restart fields `xeno list --json` / `list -l` show (absent for a domain never restarted). */
export function restartInfo(rec: DomainRecord): { restarts?: number; lastRestartReason?: string; lastRestartAt?: number; restartDueAt?: number; restartStopped?: string } {
  const h = historyOf(rec);
  if (!h.total && h.dueAt === undefined && !h.stopped) return {};
  return { restarts: h.total, lastRestartReason: h.lastReason, lastRestartAt: h.lastAt, restartDueAt: h.dueAt, restartStopped: h.stopped };
}

export class RestartScheduler {
  private readonly timers = new Map<number, NodeJS.Timeout>();
  /**
   * Set by a layer above (pool HA): a reason to refuse a guest's restart here now, or undefined.
   * A refused restart removes the domain instead (an HA guest on a host that may have lost its
   * lease must not run again here: the pool leader restarts it elsewhere).
   */
  veto?: (rec: DomainRecord) => string | undefined;

  constructor(private readonly ts: Toolstack) {}

  private save(id: number, h: RestartHistory, patch: Partial<Omit<DomainRecord, 'id' | 'extra'>> = {}): void {
    const cur = this.ts.store.get(id);
    if (!cur) return;
    this.ts.store.update(id, { ...patch, extra: { ...cur.extra, [RESTARTS_KEY]: h } });
  }

  private limitOf(rec: DomainRecord): number {
    return rec.config.restartLimit ?? this.ts.deps.config.restartLimit;
  }

  /** The guest asked for a restart (under the domain's lock): now, later, or not any more. */
  async request(rec: DomainRecord, reason: GuestStopReason): Promise<void> {
    const now = Date.now() / 1000;
    const windowS = this.ts.deps.config.restartWindowS;
    const h = historyOf(rec);
    const limit = this.limitOf(rec);
    const d = decideRestart(h, now, limit, windowS);
    const stoppedState = reason === 'crash' ? 'crashed' : 'shutdown';
    if (d.kind === 'now') return this.restartNow(rec.id, reason);
    if (d.kind === 'stop') {
      const msg =
        `${rec.name} was restarted ${d.count} times in ${Math.round(d.spanS)} s (limit: ${limit} restarts in ${windowS} s): ` +
        `it is restarting too fast and is left ${stoppedState}; see its console log ${this.ts.consoleLogFor(rec.name)} ` +
        `and QEMU's log ${path.join(rec.runDir, 'qemu.log')}, then 'xeno destroy ${rec.name}' and create it again with a fixed config ` +
        `(or 'xeno reboot ${rec.name}' to try once more)`;
      this.save(rec.id, { ...h, dueAt: undefined, dueReason: undefined, stopped: msg }, { state: stoppedState });
      this.ts.event(rec, 'restart-limit', msg, 'warn');
      return;
    }
    const dueAt = now + d.delayS;
    this.save(rec.id, { ...h, dueAt, dueReason: reason }, { state: stoppedState });
    const n = h.recent.filter((t) => now - t < windowS).length;
    this.ts.event(rec, 'restart-delayed', `${rec.name} was restarted ${n} time${n === 1 ? '' : 's'} in the last ${windowS} s: next restart in ${d.delayS} s`);
    this.schedule(rec.id, dueAt);
  }

  private async restartNow(id: number, reason: GuestStopReason): Promise<void> {
    const rec = this.ts.store.get(id);
    if (!rec) return;
    if (await this.refused(rec, reason)) return;
    const now = Date.now() / 1000;
    const h = historyOf(rec);
    const windowS = this.ts.deps.config.restartWindowS;
    this.save(id, { total: h.total + 1, recent: [...h.recent.filter((t) => now - t < windowS), now], lastReason: reason, lastAt: now });
    await this.ts.restartLocked(this.ts.store.get(id)!);
  }

  /** Under the domain's lock: a vetoed restart removes the domain (true) instead. */
  async refused(rec: DomainRecord, reason: GuestStopReason): Promise<boolean> {
    const why = this.veto?.(rec);
    if (!why) return false;
    await this.ts.releaseLocked(rec, 'restart-refused', `${rec.name}: ${reason} restart refused (${why}); domain removed`);
    return true;
  }

  /** Run the restart due at dueAt (unless the domain changed since: destroyed, rebooted by hand...). */
  schedule(id: number, dueAt: number): void {
    this.cancel(id);
    const t = setTimeout(() => {
      this.timers.delete(id);
      const rec = this.ts.store.get(id);
      if (!rec) return;
      const work = this.ts.runLocked(id, async () => {
        const cur = this.ts.store.get(id);
        const h = cur && historyOf(cur);
        if (!cur || h?.dueAt !== dueAt || (cur.state !== 'shutdown' && cur.state !== 'crashed')) return;
        await this.restartNow(id, h.dueReason ?? 'reboot');
      });
      this.ts.background(rec, work);
    }, Math.max(0, dueAt * 1000 - Date.now()));
    t.unref();
    this.timers.set(id, t);
  }

  /** At start-up: a restart an earlier xenod had delayed is scheduled again (at its time). */
  resume(rec: DomainRecord): void {
    const h = historyOf(rec);
    if (h.dueAt !== undefined && !h.stopped && (rec.state === 'shutdown' || rec.state === 'crashed')) this.schedule(rec.id, h.dueAt);
  }

  /** An admin's reboot: the window starts afresh (the total stays). */
  reset(rec: DomainRecord): void {
    this.cancel(rec.id);
    const h = historyOf(rec);
    this.save(rec.id, { total: h.total, recent: [], lastReason: h.lastReason, lastAt: h.lastAt });
  }

  cancel(id: number): void {
    const t = this.timers.get(id);
    if (t) clearTimeout(t);
    this.timers.delete(id);
  }

  closeAll(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }
}
