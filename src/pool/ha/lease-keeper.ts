/**
 * The host's one etcd lease and its keep-alive. Renewals are sent by this module (not etcd3's
 * automatic keep-alive) so that the time of the last SUCCESSFUL renewal is known exactly: it is
 * the monotonic time the renewal was SENT (etcd extended the lease after that instant, so the
 * lease cannot expire for the others earlier than `sentAt + TTL`). The fence guard counts from it.
 *
 * A renewal that etcd answers "no such lease" (it expired, or was revoked) is a LOST lease: the
 * keeper says so at once (every lock bound to it is gone: the host must fence), then grants a new
 * lease for what comes next.
 *
 * Renewals overlap (a slow answer does not hold back the next one), each on its own keep-alive
 * stream with a gRPC deadline of a few intervals. etcd3 takes a DEADLINE_EXCEEDED stream as a
 * broken host and closes every channel to it: with a deadline of one interval (1 s), a loaded host
 * made a storm of reconnects in which one client renewed nothing for 20 s while the others did;
 * with none, a channel left hanging by etcd's restart stayed hung for 14 s. A few intervals resets
 * only a channel that is truly stuck. The keeper's own timer, a little later, is the backstop.
 */
import { EventEmitter } from 'node:events';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { castGrpcError, type Lease, type Namespace } from 'etcd3';
import { monoMs } from './clock.js';

export interface LeaseKeeperOptions {
  /** Lease TTL in seconds (xeno-pool-lease-ttl). */
  ttlSec: number;
  /** How often a renewal is sent (ms); default TTL/10, at least 200 ms. */
  renewEveryMs?: number;
  /** A renewal not answered within this is given up (ms); default 3 intervals, at least 2 s. */
  renewTimeoutMs?: number;
  /**
   * Where the lease id is kept (the state dir's ha-lease): a xenod restarted after a crash re-uses
   * its still-live lease, so its keys (running/, locks, hosts/) never expire and nothing moves.
   */
  leaseFile?: string;
}

export interface LeaseKeeperEvents {
  /** The lease is gone in etcd (expired or revoked): its keys with it. */
  lost: [oldLeaseId: string];
  /** A (new) lease was granted. */
  granted: [leaseId: string];
}

export class LeaseKeeper extends EventEmitter<LeaseKeeperEvents> {
  private current?: Lease;
  private currentId?: string;
  private lastOk = -Infinity;
  private timer?: NodeJS.Timeout;
  private inFlight = 0;
  /** Why the renewals since the last successful one failed (message -> count), for the fence's log line. */
  private failures = new Map<string, number>();
  private sentSinceOk = 0;
  private stopped = false;
  readonly renewEveryMs: number;
  private readonly renewTimeoutMs: number;

  constructor(
    private readonly ns: Namespace,
    private readonly opts: LeaseKeeperOptions,
  ) {
    super();
    this.renewEveryMs = opts.renewEveryMs ?? Math.max(200, Math.round((opts.ttlSec * 1000) / 10));
    this.renewTimeoutMs = opts.renewTimeoutMs ?? Math.max(2000, this.renewEveryMs * 3);
  }

  get ttlMs(): number {
    return this.opts.ttlSec * 1000;
  }

  /** Grants the first lease (fails if etcd does not answer) and starts renewing. */
  async start(): Promise<string> {
    const id = (await this.adopt()) ?? (await this.grant());
    this.timer = setInterval(() => void this.renew(RETRIES), this.renewEveryMs);
    return id;
  }

  /** The lease to put keys with (the pool's hostLease()). */
  lease(): Lease {
    if (!this.current) throw new Error('the host lease is not granted yet');
    return this.current;
  }

  leaseId(): string | undefined {
    return this.currentId;
  }

  /** Milliseconds since the send time of the last successful renewal (Infinity before any). */
  renewAge(): number {
    return monoMs() - this.lastOk;
  }

  /** Why renewals failed since the last successful one, e.g. `3× no answer within 3000 ms, 1 pending`. */
  failureSummary(): string {
    const parts = [`${this.sentSinceOk} sent`, ...[...this.failures].map(([why, n]) => `${n}× ${why}`)];
    if (this.inFlight) parts.push(`${this.inFlight} pending`);
    return parts.join(', ');
  }

  /** The monotonic send time of the last successful renewal. */
  lastRenewal(): number {
    return this.lastOk;
  }

  async stop(revoke: boolean): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    const l = this.current;
    this.current = undefined;
    if (l && revoke) {
      await l.revoke({ deadline: Date.now() + 3000 }).catch(() => undefined);
      if (this.opts.leaseFile) rmSync(this.opts.leaseFile, { force: true });
    } else l?.release();
  }

  /** Revokes the current lease on purpose (after fencing: its keys must go) and grants a new one. */
  async replace(): Promise<string> {
    const l = this.current;
    if (l) await l.revoke({ deadline: Date.now() + this.renewTimeoutMs * 3 });
    return this.grant();
  }

  private async grant(): Promise<string> {
    const sentAt = monoMs();
    const lease = this.ns.lease(this.opts.ttlSec, { autoKeepAlive: false, deadline: Date.now() + Math.max(3000, this.renewTimeoutMs) });
    lease.on('lost', () => undefined); // told through renew()'s error instead
    const id = await lease.grant();
    this.current = lease;
    this.currentId = id;
    this.lastOk = sentAt;
    if (this.opts.leaseFile) writeFileSync(this.opts.leaseFile, `${id}\n`);
    this.emit('granted', id);
    return id;
  }

  /**
   * The lease id a previous run of xenod left in the lease file, if etcd still renews it. etcd3's
   * Lease always grants a lease of its own when made: that spare one is revoked at once, and the
   * object is pointed at the old id (etcd3 1.1.2 reads the id only through its `leaseID` promise).
   */
  private async adopt(): Promise<string | undefined> {
    const file = this.opts.leaseFile;
    if (!file || !existsSync(file)) return undefined;
    const old = readFileSync(file, 'utf8').trim();
    if (!/^[0-9]+$/.test(old)) return undefined;
    const lease = this.ns.lease(this.opts.ttlSec, { autoKeepAlive: false, deadline: Date.now() + Math.max(3000, this.renewTimeoutMs) });
    lease.on('lost', () => undefined);
    const spare = await lease.grant();
    (lease as unknown as { leaseID: Promise<string> }).leaseID = Promise.resolve(old);
    await this.ns.leaseClient.leaseRevoke({ ID: spare }).catch(() => undefined);
    const sentAt = monoMs();
    try {
      if (!(await this.renewOnce(old, 3000))) return undefined;
    } catch {
      return undefined;
    }
    this.current = lease;
    this.currentId = old;
    this.lastOk = sentAt;
    this.emit('granted', old);
    return old;
  }

  /**
   * One renewal; a failed one is sent again at once, up to `retries` times: etcd3 picks a member at
   * random for each stream and tries a failed member again 300 ms later (client-options.ts), so
   * with one member dead a third of the renewals went to it, and two refused in a row (one in nine)
   * made the renewals stale (2 s) though two members answered. The retry goes to another member
   * (etcd3 marks the refusing one failed).
   */
  private async renew(retries = 0): Promise<void> {
    if (this.stopped || this.inFlight >= MAX_IN_FLIGHT) return;
    const lease = this.current;
    const id = this.currentId;
    if (!lease || !id) {
      if (this.inFlight > 0) return; // a grant is on its way
      this.inFlight++;
      await this.grant()
        .catch(() => undefined)
        .finally(() => this.inFlight--);
      return;
    }
    this.inFlight++;
    this.sentSinceOk++;
    const sentAt = monoMs();
    let retry = false;
    try {
      const alive = await this.renewOnce(id, this.renewTimeoutMs);
      if (lease !== this.current) return;
      if (alive) {
        if (sentAt > this.lastOk) {
          this.failures.clear();
          this.sentSinceOk = 0;
        }
        this.lastOk = Math.max(this.lastOk, sentAt);
      } else {
        this.current = undefined;
        this.currentId = undefined;
        this.emit('lost', id);
      }
    } catch (e) {
      // etcd unreachable or slow for now; the fence guard watches renewAge()
      const why = (e instanceof Error ? e.message : String(e)).slice(0, 120);
      if (this.failures.size < 8 || this.failures.has(why)) this.failures.set(why, (this.failures.get(why) ?? 0) + 1);
      // only a quick refusal (a dead member): the timer's next renewal is due before a slow one's end
      retry = retries > 0 && lease === this.current && monoMs() - sentAt < this.renewEveryMs / 2;
    } finally {
      this.inFlight--;
    }
    if (retry) await this.renew(retries - 1);
  }

  /** One keep-alive on a stream of its own: true if etcd renewed the lease, false if it is gone. */
  private async renewOnce(id: string, timeoutMs: number): Promise<boolean> {
    const opening = this.ns.leaseClient.leaseKeepAlive({ deadline: Date.now() + timeoutMs });
    const stream = await withTimeout(opening, timeoutMs).catch((e: unknown) => {
      void opening.then((late) => (late.end(), late.cancel())).catch(() => undefined); // opened too late: close it
      throw e;
    });
    return new Promise<boolean>((resolve, reject) => {
      const giveUp = setTimeout(() => {
        stream.end(); // ended first: etcd3 only blames the host for errors on a writable stream
        stream.cancel();
        reject(new Error(`no answer within ${timeoutMs} ms`));
      }, timeoutMs + BACKSTOP_MS);
      stream.on('data', (res: { TTL: string }) => {
        clearTimeout(giveUp);
        stream.end();
        resolve(Number(res.TTL) > 0);
      });
      stream.on('error', (err: Error) => {
        clearTimeout(giveUp);
        reject(castGrpcError(err));
      });
      stream.write({ ID: id });
    });
  }
}

/** How long after its gRPC deadline a renewal is given up here, if gRPC has not said so. */
const BACKSTOP_MS = 500;

/** How often a failed renewal is sent again at once (on another member), per interval. */
const RETRIES = 2;

/** Renewals at once at most: enough to ride out answers a few intervals late. */
const MAX_IN_FLIGHT = 4;

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}
