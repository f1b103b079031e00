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
 *
 * Coming back from a hold: hosts never reach a returning etcd in the same instant (on a loaded
 * host seconds apart), so the first one back must not make the others fence. A peer we HEARD not
 * renewing during this hold (at `downHeard(p)`) and that renews now gives us a grace until
 * downHeard(p) + fence time - margin: that peer's renewals became fresh after it sent that report,
 * and it leads (restarts anything) only once they have been fresh for the fence time (the leader
 * hold-off), nor before our lease, extended by etcd's new leader, expires. A silent peer still fences.
 */
import { monoMs } from './clock.js';
import type { PeerReport } from './witness.js';

export type FenceVerdict =
  | { action: 'ok' }
  | { action: 'hold'; why: string }
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
  /** When a peer was last heard NOT renewing during this outage's hold (undefined: not in a hold). */
  downHeard?: (host: string) => number | undefined;
}

/** The pure rule above. */
export function fenceVerdict(i: FenceInput): FenceVerdict {
  if (i.renewAgeMs <= i.fenceMs) return { action: 'ok' };
  const age = Math.round(i.renewAgeMs);
  if (i.peers.length === 0) return { action: 'fence', why: `no lease renewal for ${age} ms and no other member to ask` };
  const back: string[] = [];
  for (const p of i.peers) {
    const r = i.reports(p);
    if (!r || i.now - r.heardAt > i.staleMs) return { action: 'fence', why: `no lease renewal for ${age} ms and member ${p} is silent` };
    // a peer with no lease at all (-1) is not renewing either
    const peerAge = r.renewAgeMs + (i.now - r.heardAt);
    if (r.renewAgeMs >= 0 && peerAge <= i.healthyMs) {
      const down = i.downHeard?.(p);
      if (down !== undefined && i.now < down + i.fenceMs - recoveryMarginMs(i.fenceMs)) {
        back.push(p);
        continue;
      }
      return { action: 'fence', why: `no lease renewal for ${age} ms while member ${p} renews (${Math.round(peerAge)} ms ago)` };
    }
  }
  if (back.length) return { action: 'hold', why: `no lease renewal for ${age} ms; etcd is back for ${back.join(', ')} after an outage for everyone: a grace to renew` };
  return { action: 'hold', why: `no lease renewal for ${age} ms, but every other member is cut off from etcd too` };
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
  private lastTick = 0;
  /** During a hold: when each peer was last heard not renewing (cleared once we renew again). */
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
      downHeard: (p) => this.down.get(p),
    });
    if (v.action === 'ok') {
      this.fenced = false;
      this.held = false;
      this.down.clear();
    } else if (v.action === 'fence') {
      this.fenceNow(stalledMs > STALL_MS ? `${v.why}; this process was not scheduled for ${Math.round(stalledMs)} ms before` : v.why);
    } else {
      if (!this.held) this.o.hold?.(v.why);
      this.held = true;
      for (const p of this.o.peers()) {
        const r = this.o.reports(p);
        if (r && (r.renewAgeMs < 0 || r.renewAgeMs > this.o.healthyMs)) this.down.set(p, r.heardAt);
      }
    }
    return v;
  }
}
