/**
 * One host's HA agent: its lease keeper, its witness (UDP word with the other members), its fence
 * guard, its candidacy for pool leader, and two loops:
 *   - on every host: guests the leader ASSIGNED to this host (`P ha/<name>` = {host: me,
 *     assigned: true}) are started here through `ops.start` (which takes the disk locks first);
 *   - on the leader only: the HA guests whose host's lease is gone (no `running/<name>`, and its
 *     `ha/<name>` host absent from `hosts/` or null after a fence) are placed by priority and
 *     assigned, each in a txn guarded by the leader key and the entry's mod revision.
 * The leader acts only once its own renewals have been fresh for `holdoffMs` without a break, so a
 * host that came out of the same outage has had time to hear it and fence (docs/pool-ha.md).
 * A pass runs every `loopMs` and at once on what can call for one (watches): a lease's keys gone
 * (`hosts/`, `running/` deletes), an `ha/` entry written, leadership changed.
 */
import type { Namespace, Watcher } from 'etcd3';
import { monoMs } from './clock.js';
import { LeaderElection } from './election.js';
import { FenceGuard } from './fence.js';
import { LeaseKeeper } from './lease-keeper.js';
import { placeOrphans } from './restart.js';
import { Witness, type WitnessPeer } from './witness.js';

import { HA_PREFIX, type HaEntry, type HaGuestInfo } from './restart.js';

export { HA_PREFIX, type HaEntry, type HaGuestInfo } from './restart.js';

/** What the agent needs of the host's toolstack. */
export interface HaHostOps {
  /** Names of the HA guests running on this host now. */
  haGuests(): string[];
  /** Kills a guest's QEMU at once (SIGKILL): fencing. */
  kill(name: string): void;
  /** Starts a guest here (taking its disk locks in one txn first); rejects if it cannot. */
  start(name: string, entryModRevision: string): Promise<void>;
  /** The HA facts of a pool definition (memory, priority), or undefined if it is gone. */
  guestInfo(name: string): Promise<HaGuestInfo | undefined>;
}

export interface HaAgentOptions {
  pool: string;
  host: string;
  ns: Namespace;
  ops: HaHostOps;
  ttlSec: number;
  fenceMs: number;
  witnessKey: Buffer;
  witnessBind: { address: string; port: number };
  /** The other members (cached from members/: the witness must work while etcd is down). */
  peers: WitnessPeer[];
  holdoffMs?: number;
  loopMs?: number;
  /** Where the lease id is kept, for a restarted xenod to re-use its still-live lease. */
  leaseFile?: string;
  log?: (msg: string) => void;
}

export class HaAgent {
  readonly keeper: LeaseKeeper;
  readonly witness: Witness;
  readonly guard: FenceGuard;
  readonly election: LeaderElection;
  private timer?: NodeJS.Timeout;
  private watchers: Watcher[] = [];
  private passSoon = false;
  private stopped = false;
  private freshSince = monoMs();
  private fencedGuests = new Set<string>();
  private handedOver = new Set<string>();
  private starting = new Set<string>();
  private readonly log: (m: string) => void;
  /** Every fence and assignment, for the logs and the tests. */
  readonly events: Array<{ at: number; what: string }> = [];

  constructor(private readonly o: HaAgentOptions) {
    this.log = o.log ?? (() => undefined);
    this.keeper = new LeaseKeeper(o.ns, { ttlSec: o.ttlSec, leaseFile: o.leaseFile });
    this.witness = new Witness({ pool: o.pool, host: o.host, key: o.witnessKey, bind: o.witnessBind, renewAge: () => this.reportedAge() });
    this.witness.setPeers(o.peers);
    const staleMs = Math.max(1000, this.keeper.renewEveryMs * 3);
    this.guard = new FenceGuard({
      fenceMs: o.fenceMs,
      staleMs,
      healthyMs: this.keeper.renewEveryMs * 3,
      renewAge: () => this.keeper.renewAge(),
      peers: () => this.witness.peerHosts(),
      reports: (h) => this.witness.report(h),
      fence: (why) => this.fence(why),
      hold: (why) => this.note(`hold: ${why}`),
    });
    this.election = new LeaderElection(o.ns, o.host, () => this.keeper.lease());
    this.keeper.on('lost', () => this.guard.fenceNow('etcd says the host lease is gone'));
    if (o.fenceMs >= o.ttlSec * 1000) throw new Error(`fence time ${o.fenceMs} ms must be shorter than the lease TTL ${o.ttlSec} s`);
  }

  async start(): Promise<number> {
    await this.keeper.start();
    const port = await this.witness.start();
    this.guard.start();
    await this.election.start();
    this.election.on('change', (leading) => {
      this.note(leading ? 'now the pool leader' : `no longer the pool leader (${this.election.leader() ?? 'none'} is)`);
      this.pass();
    });
    // the watches only hasten a pass: the timer is what a cut watch cannot stop
    this.watchers = await Promise.all([
      this.o.ns.watch().prefix('hosts/').only('delete').create(),
      this.o.ns.watch().prefix('running/').only('delete').create(),
      this.o.ns.watch().prefix(HA_PREFIX).only('put').create(),
    ]);
    for (const w of this.watchers) {
      w.on('data', () => this.pass());
      w.on('error', () => undefined);
    }
    this.timer = setInterval(() => this.pass(), this.o.loopMs ?? 500);
    return port;
  }

  /**
   * A pass soon: the events of one etcd revision (a lease's keys all go at once) make one pass. A
   * pass already running does not hold this one back: a call stuck on an unreachable member (up to
   * its deadline) must not delay the next pass, as the timer's passes never waited either.
   */
  private pass(): void {
    if (this.passSoon || this.stopped) return;
    this.passSoon = true;
    setImmediate(() => {
      this.passSoon = false;
      void this.tick().catch(() => undefined);
    });
  }

  /** graceful: resign and revoke the lease (its keys go now); else just stop, as a dying host does. */
  async stop(graceful: boolean): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.stopped = true;
    // not awaited: with etcd out of reach a cancel may wait long, and a stop must not
    for (const w of this.watchers) void w.cancel().catch(() => undefined);
    this.guard.stop();
    this.witness.stop();
    await this.election.stop(graceful);
    await this.keeper.stop(graceful);
  }

  /**
   * A guest gone here for HA's sake but not by a fence (its restart refused): its ha/ entry goes to
   * the leader once renewals are fresh, WITHOUT replacing the lease (other HA guests may run on).
   */
  handOver(name: string): void {
    this.note(`${name} handed over (its restart here refused)`);
    this.handedOver.add(name);
  }

  /** Whether guests gone here still wait for their ha/ entries to be handed to the leader. */
  fencePending(): boolean {
    return this.fencedGuests.size > 0 || this.handedOver.size > 0;
  }

  setPeers(peers: WitnessPeer[]): void {
    this.witness.setPeers(peers);
  }

  /** What the witness tells the others: no lease at all reads as "not renewing" (-1). */
  private reportedAge(): number {
    return this.keeper.leaseId() === undefined ? -1 : Math.min(this.keeper.renewAge(), 2 ** 31 - 1);
  }

  private note(what: string): void {
    this.events.push({ at: monoMs(), what });
    this.log(`ha ${this.o.host}: ${what}`);
  }

  private fence(why: string): void {
    const names = this.o.ops.haGuests();
    this.note(`fence (${why}; renewals: ${this.keeper.failureSummary()}): killing ${names.join(', ') || 'no HA guest'}`);
    for (const n of names) {
      this.fencedGuests.add(n);
      this.o.ops.kill(n);
    }
  }

  private async tick(): Promise<void> {
    const fresh = this.keeper.renewAge() <= this.keeper.renewEveryMs * 2;
    if (!fresh) {
      if (this.freshSince !== Infinity) this.note(`renewals stale (last ${Math.round(this.keeper.renewAge())} ms ago; since: ${this.keeper.failureSummary()}): no HA action until fresh for the hold-off`);
      this.freshSince = Infinity;
      return;
    }
    if (this.freshSince === Infinity) {
      this.freshSince = monoMs();
      this.note('renewals fresh again');
    }
    try {
      if (this.fencedGuests.size) await this.releaseFenced();
      if (this.handedOver.size) await this.giveUp(this.handedOver);
      await this.takeAssignments();
      const holdoff = this.o.holdoffMs ?? this.o.fenceMs;
      const guard = this.election.leaderGuard();
      if (guard && monoMs() - this.freshSince >= holdoff) {
        const r = await placeOrphans(this.o.ns, guard, (n) => this.o.ops.guestInfo(n));
        for (const m of r.assigned) this.note(`assigned ${m.name} to ${m.host} (was on ${m.from ?? 'nowhere'})`);
        for (const x of r.stuck) this.note(`cannot place ${x.name}: ${x.why}`);
      }
    } catch (e) {
      this.log(`ha ${this.o.host}: ${(e as Error).message}`);
    }
  }

  /** Back in touch after a fence: our killed guests' entries go, so the leader places them again. */
  private async releaseFenced(): Promise<void> {
    if (this.keeper.leaseId() !== undefined) await this.keeper.replace();
    await this.giveUp(this.fencedGuests);
  }

  /** Each guest's ha/ entry, if still this host's, set to host null: the leader places it again. */
  private async giveUp(names: Set<string>): Promise<void> {
    for (const name of [...names]) {
      const key = HA_PREFIX + name;
      const kv = (await this.o.ns.get(key).exec()).kvs[0];
      if (kv) {
        const e = JSON.parse(kv.value.toString()) as HaEntry;
        if (e.host === this.o.host) {
          const next: HaEntry = { host: null, assigned: false, epoch: e.epoch + 1, why: `fenced on ${this.o.host}` };
          await this.o.ns.if(key, 'Mod', '==', Number(kv.mod_revision)).then(this.o.ns.put(key).value(JSON.stringify(next))).commit();
        }
      }
      names.delete(name);
    }
  }

  private async takeAssignments(): Promise<void> {
    const all = (await this.o.ns.getAll().prefix(HA_PREFIX).exec()).kvs;
    const here = new Set(this.o.ops.haGuests());
    for (const kv of all) {
      const name = kv.key.toString().split(HA_PREFIX).pop()!;
      const e = JSON.parse(kv.value.toString()) as HaEntry;
      if (e.host !== this.o.host || !e.assigned || here.has(name) || this.starting.has(name)) continue;
      this.starting.add(name);
      this.note(`starting ${name} (assigned, epoch ${e.epoch})`);
      this.o.ops
        .start(name, kv.mod_revision)
        .catch(async (err: Error) => {
          this.note(`could not start ${name}: ${err.message}`);
          const next: HaEntry = { host: null, assigned: false, epoch: e.epoch + 1, why: `${this.o.host}: ${err.message}` };
          await this.o.ns.if(HA_PREFIX + name, 'Mod', '==', Number(kv.mod_revision)).then(this.o.ns.put(HA_PREFIX + name).value(JSON.stringify(next))).commit().catch(() => undefined);
        })
        .finally(() => this.starting.delete(name));
    }
  }
}
