/**
 * Self-fencing: a host whose lease may soon expire for the others kills its HA guests' QEMUs
 * itself, BEFORE the lease can expire (docs/pool-ha.md has every partition of three hosts).
 *
 * The rule, evaluated every `checkEveryMs`:
 *   - renewal age <= fence time: all is well (the lease cannot have expired: fence < TTL).
 *   - renewal age > fence time: HOLD only while no other member can be leading now or before the
 *     hold's bound, and FENCE otherwise. The fact each hold rests on: a member heard NOT renewing
 *     (its reported renewal age, plus the time since, past `healthyMs`, the most a renewing host's
 *     age ever reaches) at d leads, i.e. restarts anything, only once its renewals have been fresh
 *     for the fence time F (the leader hold-off): not before d + F. So a member last heard down at
 *     d is harmless until d + F - margin (the margin covers the witness's transit and lag), whether
 *     it still says so, has gone silent, or renews again. Every member harmless: hold, until the
 *     earliest of those bounds (what the fence watchdog is told, so a stalled xenod is not taken
 *     for a fence). Any member renewing, or silent, with no such report behind it: fence. We
 *     cannot tell it is not a live leader about to restart our guests once our lease expires.
 *   - So with etcd out for everyone every host holds (hosts that lost etcd in the same instant
 *     differ in renewal age by up to one interval: the first past F must not take the others for
 *     healthy); and coming back, when hosts reach the returning etcd seconds apart, the first one
 *     back does not make the others fence for a margin short of F.
 * A lease etcd reports lost is fenced at once, whatever the peers say (its locks are gone).
 */
import { monoMs } from './clock.js';
import type { PeerReport } from './witness.js';

export type FenceVerdict =
  | { action: 'ok' }
  /** untilMs (monoMs): how long this hold stays safe without a newer report (the watchdog's bound). */
  | { action: 'hold'; why: string; untilMs: number }
  | { action: 'fence'; why: string };

/** What the grace after a hold keeps short of the fence time (the witness's transit and lag). */
export function recoveryMarginMs(fenceMs: number): number {
  return Math.max(1000, Math.round(fenceMs / 3));
}

export interface FenceInput {
  renewAgeMs: number;
  fenceMs: number;
  /** How old a peer's report may be and still count (ms). */
  staleMs: number;
  /** A renewing host's renewal age stays below this (interval + timeout + slack). */
  healthyMs: number;
  now: number;
  /** The other members of the pool (names). */
  peers: string[];
  reports: (host: string) => PeerReport | undefined;
  /** When a peer was last heard NOT renewing (undefined: never, or not since we last renewed). */
  downHeard?: (host: string) => number | undefined;
}

/** Whether a report, as of `now`, says its host is not renewing (no lease at all reads -1). */
export function reportsDown(r: PeerReport, now: number, healthyMs: number): boolean {
  return r.renewAgeMs < 0 || r.renewAgeMs + (now - r.heardAt) > healthyMs;
}

/** The pure rule above. */
export function fenceVerdict(i: FenceInput): FenceVerdict {
  if (i.renewAgeMs <= i.fenceMs) return { action: 'ok' };
  const age = Math.round(i.renewAgeMs);
  if (i.peers.length === 0) return { action: 'fence', why: `no lease renewal for ${age} ms and no other member to ask` };
  const span = i.fenceMs - recoveryMarginMs(i.fenceMs);
  const back: string[] = [];
  const silent: string[] = [];
  let untilMs = Infinity;
  for (const p of i.peers) {
    const r = i.reports(p);
    const fresh = !!r && i.now - r.heardAt <= i.staleMs;
    const downNow = fresh && reportsDown(r, i.now, i.healthyMs);
    // heard not renewing at d, a peer leads (restarts anything) at d + F at the earliest: until then it cannot act
    const d = Math.max(downNow ? r.heardAt : -Infinity, i.downHeard?.(p) ?? -Infinity);
    if (i.now < d + span) {
      untilMs = Math.min(untilMs, d + span);
      if (!downNow) (fresh ? back : silent).push(p);
      continue;
    }
    if (!fresh) return { action: 'fence', why: `no lease renewal for ${age} ms and member ${p} is silent` };
    if (!downNow) return { action: 'fence', why: `no lease renewal for ${age} ms while member ${p} renews (${Math.round(r.renewAgeMs + (i.now - r.heardAt))} ms ago)` };
    return { action: 'fence', why: `no lease renewal for ${age} ms and member ${p} last heard down too long ago` };
  }
  if (back.length || silent.length) {
    const parts = [back.length ? `etcd is back for ${back.join(', ')}` : '', silent.length ? `${silent.join(', ')} silent since heard cut off` : ''].filter(Boolean);
    return { action: 'hold', untilMs, why: `no lease renewal for ${age} ms; ${parts.join('; ')} after an outage for everyone: a grace to renew` };
  }
  return { action: 'hold', untilMs, why: `no lease renewal for ${age} ms, but every other member is cut off from etcd too` };
}

/**
 * Whether an HA guest that crashed or rebooted may be restarted HERE (on_crash / on_reboot =
 * restart): not once this host has fenced in this outage, nor while its renewals are past the
 * fence time unless the fence rule holds (etcd out for everyone: nobody can start it elsewhere).
 * Otherwise the others may take its locks soon: a local restart would run it twice. The reason,
 * or undefined to allow it.
 */
export function haRestartVeto(s: { fenced: boolean; holding: boolean; renewAgeMs: number; fenceMs: number }): string | undefined {
  if (s.fenced) return 'this host fenced its HA guests: the pool leader restarts it elsewhere';
  if (s.renewAgeMs > s.fenceMs && !s.holding) return `no lease renewal for ${Math.round(s.renewAgeMs)} ms (fence time ${s.fenceMs} ms): the pool leader restarts it elsewhere`;
  return undefined;
}

export interface FenceGuardOptions {
  fenceMs: number;
  staleMs: number;
  healthyMs: number;
  checkEveryMs?: number;
  renewAge: () => number;
  peers: () => string[];
  reports: (host: string) => PeerReport | undefined;
  /** Kills the HA guests' QEMUs; called once per outage (until renewals are fresh again). */
  fence: (why: string) => void;
  /** Told of each hold (etcd out for everyone), once per outage. */
  hold?: (why: string) => void;
}

/** A check this late (ms) means the process was not scheduled: the event loop was blocked. */
const STALL_MS = 500;

export class FenceGuard {
  private timer?: NodeJS.Timeout;
  private fenced = false;
  private held = false;
  private heldUntil = -Infinity;
  private lastTick = 0;
  /** When each peer was last heard not renewing: the rule bounds how long that counts. */
  private readonly down = new Map<string, number>();

  constructor(private readonly o: FenceGuardOptions) {}

  start(): void {
    const every = this.o.checkEveryMs ?? 100;
    this.lastTick = monoMs();
    this.timer = setInterval(() => {
      const now = monoMs();
      const stalledMs = now - this.lastTick - every;
      this.lastTick = now;
      // After a stall of this process, etcd's answers and the peers' datagrams that came meanwhile
      // are still queued behind the timers: judge once they are read (after the next I/O poll).
      if (stalledMs > STALL_MS) setImmediate(() => this.check(stalledMs));
      else this.check();
    }, every);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** Whether this host has fenced since its renewals were last fresh. */
  hasFenced(): boolean {
    return this.fenced;
  }

  /** Whether the last check said hold (etcd out for everyone). */
  holding(): boolean {
    return this.held;
  }

  /** Until when (monoMs) the last hold stays safe without a newer check: told to the fence watchdog. */
  holdUntil(): number {
    return this.held ? this.heldUntil : -Infinity;
  }

  /** Fences now (a lost lease), unless already fenced in this outage. */
  fenceNow(why: string): void {
    if (this.fenced) return;
    this.fenced = true;
    this.o.fence(why);
  }

  check(stalledMs = 0): FenceVerdict {
    const now = monoMs();
    for (const p of this.o.peers()) {
      const r = this.o.reports(p);
      if (r && now - r.heardAt <= this.o.staleMs && reportsDown(r, now, this.o.healthyMs)) this.down.set(p, r.heardAt);
    }
    const v = fenceVerdict({
      renewAgeMs: this.o.renewAge(),
      fenceMs: this.o.fenceMs,
      staleMs: this.o.staleMs,
      healthyMs: this.o.healthyMs,
      now,
      peers: this.o.peers(),
      reports: this.o.reports,
      downHeard: (p) => this.down.get(p),
    });
    if (v.action === 'ok') {
      this.fenced = false;
      this.held = false;
    } else if (v.action === 'fence') {
      this.held = false;
      this.fenceNow(stalledMs > STALL_MS ? `${v.why}; this process was not scheduled for ${Math.round(stalledMs)} ms before` : v.why);
    } else {
      if (!this.held) this.o.hold?.(v.why);
      this.held = true;
      this.heldUntil = v.untilMs;
    }
    return v;
  }
}
