/**
 * The host's one etcd lease and its keep-alive. Renewals are sent by this module (not etcd3's
 * automatic keep-alive) so that the time of the last SUCCESSFUL renewal is known exactly: it is
 * the monotonic time the renewal was SENT (etcd extended the lease after that instant, so the
 * lease cannot expire for the others earlier than `sentAt + TTL`). The fence guard counts from it.
 *
 * A renewal that etcd answers "no such lease" (it expired, or was revoked) is a LOST lease: the
 * keeper says so at once (every lock bound to it is gone: the host must fence), then grants a new
 * lease for what comes next.
 */
import { EventEmitter } from 'node:events';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { EtcdLeaseInvalidError, type Lease, type Namespace } from 'etcd3';
import { monoMs } from './clock.js';

export interface LeaseKeeperOptions {
  /** Lease TTL in seconds (xeno-pool-lease-ttl). */
  ttlSec: number;
  /** How often a renewal is sent (ms); default TTL/10, at least 200 ms. */
  renewEveryMs?: number;
  /** A renewal not answered within this is a failure (ms); default the renewal interval. */
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
  private inFlight = false;
  private stopped = false;
  readonly renewEveryMs: number;
  private readonly renewTimeoutMs: number;

  constructor(
    private readonly ns: Namespace,
    private readonly opts: LeaseKeeperOptions,
  ) {
    super();
    this.renewEveryMs = opts.renewEveryMs ?? Math.max(200, Math.round((opts.ttlSec * 1000) / 10));
    this.renewTimeoutMs = opts.renewTimeoutMs ?? this.renewEveryMs;
  }

  get ttlMs(): number {
    return this.opts.ttlSec * 1000;
  }

  /** Grants the first lease (fails if etcd does not answer) and starts renewing. */
  async start(): Promise<string> {
    const id = (await this.adopt()) ?? (await this.grant());
    this.timer = setInterval(() => void this.renew(), this.renewEveryMs);
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
      const res = await withTimeout(lease.keepaliveOnce({ deadline: Date.now() + 3000 }), 3000);
      if (!(Number(res.TTL) > 0)) return undefined;
    } catch {
      return undefined;
    }
    this.current = lease;
    this.currentId = old;
    this.lastOk = sentAt;
    this.emit('granted', old);
    return old;
  }

  private async renew(): Promise<void> {
    if (this.inFlight || this.stopped) return;
    this.inFlight = true;
    const lease = this.current;
    const sentAt = monoMs();
    try {
      if (!lease) {
        await this.grant();
        return;
      }
      const res = await withTimeout(lease.keepaliveOnce({ deadline: Date.now() + this.renewTimeoutMs }), this.renewTimeoutMs);
      if (lease === this.current && Number(res.TTL) > 0) this.lastOk = Math.max(this.lastOk, sentAt);
    } catch (e) {
      if (e instanceof EtcdLeaseInvalidError && lease === this.current) {
        const old = this.currentId ?? '';
        this.current = undefined;
        this.currentId = undefined;
        this.emit('lost', old);
      }
      // any other failure: etcd unreachable for now; the fence guard watches renewAge()
    } finally {
      this.inFlight = false;
    }
  }
}

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
