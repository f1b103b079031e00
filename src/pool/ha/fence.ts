/**
 * Self-fencing: a host whose lease may soon expire for the others kills its HA guests' QEMUs
 * itself, BEFORE the lease can expire (docs/pool-ha.md has every partition of three hosts).
 *
 * The rule, evaluated every `checkEveryMs`:
 *   - renewal age <= fence time: all is well (the lease cannot have expired: fence < TTL).
 *   - renewal age > fence time, and EVERY other member has told us, within `staleMs`, that it is
 *     not renewing either (its renewal age, as reported plus the time since, is past
 *     `healthyMs`, the most a renewing host's age ever reaches): etcd is out for everyone.
 *     Nobody can take our locks or elect a leader that restarts our guests while nobody reaches
 *     etcd, so we HOLD. (Not "past the fence time": hosts that lost etcd in the same instant
 *     differ in renewal age by up to one renewal interval, and the first to reach the fence time
 *     must not take the others for healthy.)
 *   - otherwise (some member is silent, or says it renews fine): FENCE. We cannot tell that
 *     member is not a live leader about to restart our guests once our lease expires.
 * A lease etcd reports lost is fenced at once, whatever the peers say (its locks are gone).
 */
import { monoMs } from './clock.js';
import type { PeerReport } from './witness.js';

export type FenceVerdict =
  | { action: 'ok' }
  | { action: 'hold'; why: string }
  | { action: 'fence'; why: string };

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
}

/** The pure rule above. */
export function fenceVerdict(i: FenceInput): FenceVerdict {
  if (i.renewAgeMs <= i.fenceMs) return { action: 'ok' };
  const age = Math.round(i.renewAgeMs);
  if (i.peers.length === 0) return { action: 'fence', why: `no lease renewal for ${age} ms and no other member to ask` };
  for (const p of i.peers) {
    const r = i.reports(p);
    if (!r || i.now - r.heardAt > i.staleMs) return { action: 'fence', why: `no lease renewal for ${age} ms and member ${p} is silent` };
    // a peer with no lease at all (-1) is not renewing either
    const peerAge = r.renewAgeMs + (i.now - r.heardAt);
    if (r.renewAgeMs >= 0 && peerAge <= i.healthyMs) {
      return { action: 'fence', why: `no lease renewal for ${age} ms while member ${p} renews (${Math.round(peerAge)} ms ago)` };
    }
  }
  return { action: 'hold', why: `no lease renewal for ${age} ms, but every other member is cut off from etcd too` };
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
  private lastTick = 0;

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

  /** Whether the last check said hold (etcd out for everyone): told to the fence watchdog. */
  holding(): boolean {
    return this.held;
  }

  /** Fences now (a lost lease), unless already fenced in this outage. */
  fenceNow(why: string): void {
    if (this.fenced) return;
    this.fenced = true;
    this.o.fence(why);
  }

  check(stalledMs = 0): FenceVerdict {
    const v = fenceVerdict({
      renewAgeMs: this.o.renewAge(),
      fenceMs: this.o.fenceMs,
      staleMs: this.o.staleMs,
      healthyMs: this.o.healthyMs,
      now: monoMs(),
      peers: this.o.peers(),
      reports: this.o.reports,
    });
    if (v.action === 'ok') {
      this.fenced = false;
      this.held = false;
    } else if (v.action === 'fence') {
      this.fenceNow(stalledMs > STALL_MS ? `${v.why}; this process was not scheduled for ${Math.round(stalledMs)} ms before` : v.why);
    } else if (!this.held) {
      this.held = true;
      this.o.hold?.(v.why);
    }
    return v;
  }
}
