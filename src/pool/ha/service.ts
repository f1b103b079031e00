/**
 * Pool HA inside a pooled xenod: the HaAgent wired to the pool (its etcd namespace, the host's ONE
 * lease taken over from PoolEtcd, the members as witness peers) and to the toolstack (fencing
 * kills QEMUs, assigned guests start through the daemon's pool start, which takes the disk locks).
 * A sync loop keeps `ha/<name>` in step with this host's HA guests and drops this host's disk locks
 * of guests that no longer run here (stopped, migrated away); it pauses while the host is fenced or
 * not renewing, so a fenced guest's entry is handed to the leader, never deleted.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { errorMessage } from '../../common/errors.js';
import { isMigratingOut } from '../../migration/recovery.js';
import type { Toolstack } from '../../toolstack/toolstack.js';
import type { MemberRecord } from '../member.js';
import type { PoolService } from '../service.js';
import path from 'node:path';
import { HaAgent } from './agent.js';
import { monoMs } from './clock.js';
import { haRestartVeto } from './fence.js';
import { FenceWatchdogClient } from './fence-watchdog.js';
import { LOCK_PREFIX, type LockHolder } from './disk-locks.js';
import { HA_PREFIX, type HaEntry, type HaGuestInfo } from './restart.js';

/** The witness listens on UDP at the pool door's port + 1 (the door itself is TCP). */
export function witnessPort(apiPort: number): number {
  return apiPort + 1;
}

/** HA's timing from the lease TTL: fence at 60 % of it (4 s before a 10 s lease can expire). */
export function fenceMsFor(ttlSec: number): number {
  return Math.round(ttlSec * 1000 * 0.6);
}

export class HaService {
  agent?: HaAgent;
  private timer?: NodeJS.Timeout;
  private watchdog?: FenceWatchdogClient;

  constructor(
    private readonly pool: PoolService,
    private readonly ts: Toolstack,
    private readonly log: Logger,
    /** Starts a pool guest here from its definition (the daemon's pool start: locks, then QEMU). */
    private readonly startLocal: (name: string) => Promise<void>,
  ) {}

  /** Takes the host lease over and starts the agent; before pool.start() (which puts with the lease). */
  async start(): Promise<void> {
    const cfg = this.pool.config.pool!;
    const ns = this.pool.etcd.ns;
    // the pool's secret (PoolService makes it the same way; whichever host is first)
    await ns.if('relocation-key', 'Create', '==', 0).then(ns.put('relocation-key').value(randomBytes(32).toString('hex'))).commit();
    const key = await ns.get('relocation-key').string();
    if (!key) throw new Error('the pool has no secret to sign witness reports with');
    const agent = new HaAgent({
      pool: cfg.name,
      host: cfg.host,
      ns,
      ttlSec: cfg.leaseTtl,
      fenceMs: fenceMsFor(cfg.leaseTtl),
      // the witness key: derived from the pool's secret, which only members can read in etcd
      witnessKey: createHash('sha256').update(`xeno-ha-witness\0${key}`).digest(),
      witnessBind: { address: cfg.address, port: witnessPort(cfg.apiPort) },
      peers: await this.peers(),
      leaseFile: path.join(this.pool.config.stateDir, 'ha-lease'),
      log: (m) => this.log.warn(m),
      ops: {
        haGuests: () => this.localHaGuests(),
        kill: (n) => this.kill(n),
        start: (n) => this.startLocal(n),
        guestInfo: (n) => this.guestInfo(n),
      },
    });
    await agent.start();
    this.agent = agent;
    // fences at F even if this xenod crashes (docs/pool-ha.md, "xenod crashed while its QEMUs run")
    const watchdog = new FenceWatchdogClient(
      this.pool.config.stateDir,
      {
        lastRenewal: () => agent.keeper.lastRenewal(),
        renewAge: () => agent.keeper.renewAge(),
        fenceMs: fenceMsFor(cfg.leaseTtl),
        pids: () => this.localHaPids(),
        holding: () => agent.guard.holding(),
        holdUntil: () => agent.guard.holdUntil(),
        now: () => monoMs(),
      },
      (m) => this.log.warn(m),
    );
    await watchdog.start();
    this.watchdog = watchdog;
    // an HA guest's own restart (on_crash / on_reboot) must not run it here once the others may restart it
    this.ts.restarts.veto = (rec) => {
      if (!rec.config.ha) return undefined;
      const why = haRestartVeto({ fenced: agent.guard.hasFenced(), holding: agent.guard.holding(), renewAgeMs: agent.keeper.renewAge(), fenceMs: fenceMsFor(cfg.leaseTtl) });
      if (why) agent.handOver(rec.name);
      return why;
    };
    // a guest migrated in is this host's to have restarted from its commit on, not 2 s later at the
    // next sync: its host dying in between left ha/ naming the source, alive, whose sync then took
    // the guest for migrated away and deleted the entry (the guest was never restarted)
    this.pool.onMigratedIn = async (name) => {
      try {
        if (this.ts.resolve(name).config.ha) await this.claimEntry(name);
      } catch (e) {
        this.log.warn(`ha: ${name} migrated in, its ha/ entry not claimed yet (the next sync does): ${errorMessage(e)}`);
      }
    };
    this.pool.etcd.useLease(() => agent.keeper.lease());
    agent.keeper.on('lost', () => this.pool.etcd.leaseLost(new Error('the host lease expired or was revoked')));
    this.timer = setInterval(() => void this.sync(), 2000);
    this.timer.unref();
  }

  /**
   * xenod stopping is not the host going: its guests keep running while the lease runs out. So each
   * HA guest here is marked held first (the leader leaves it alone until this xenod is back and
   * clears the mark): never restarted elsewhere while its QEMU may still run.
   */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.pool.onMigratedIn = undefined;
    const ns = this.pool.etcd.ns;
    for (const name of this.localHaGuests()) {
      const held: HaEntry = { host: this.pool.host, assigned: false, epoch: Date.now(), held: true };
      await ns.put(HA_PREFIX + name).value(JSON.stringify(held)).exec().catch((e: unknown) => this.log.error(`ha: could not hold ${name}: ${errorMessage(e)}`));
    }
    await this.watchdog?.standDown();
    await this.agent?.stop(false);
  }

  private async peers() {
    const port = witnessPort(this.pool.config.pool!.apiPort);
    const members = await this.pool.etcd.listJson<MemberRecord>('members/');
    return [...members.values()].map((m) => ({ host: m.name, address: m.address, port }));
  }

  private localHaGuests(): string[] {
    return this.ts.list().filter((d) => d.id !== 0 && this.ts.resolve(d.name).config.ha).map((d) => d.name);
  }

  private localHaPids(): number[] {
    return this.localHaGuests().flatMap((name) => {
      const rec = this.ts.resolve(name);
      const pid = this.ts.liveById(rec.id)?.vm.pid ?? rec.pid;
      return pid ? [pid] : [];
    });
  }

  private kill(name: string): void {
    try {
      const rec = this.ts.resolve(name);
      const live = this.ts.liveById(rec.id);
      // xenod's own stop: its exit is not a crash to restart here
      if (live) live.stopping = true;
      const pid = live?.vm.pid ?? rec.pid;
      if (pid) process.kill(pid, 'SIGKILL');
      // the kill first (above, at once); then the record goes too, or the pool view would show the
      // guest here as well as where the leader restarts it (teardown is local: no etcd needed)
      const work = this.ts.runLocked(rec.id, async () => {
        const cur = this.ts.store.get(rec.id);
        if (cur) await this.ts.releaseLocked(cur, 'fence', `${name} fenced: its QEMU (pid ${pid ?? '?'}) killed, domain removed; the pool leader restarts it elsewhere`);
      });
      this.ts.background(rec, work);
    } catch (e) {
      this.log.error(`ha: fencing ${name} failed: ${errorMessage(e)}`);
    }
  }

  private async guestInfo(name: string): Promise<HaGuestInfo | undefined> {
    const def = await this.pool.definitions().then((d) => d.get(name));
    if (!def || !def.ha) return undefined;
    return { name, memoryMiB: def.maxmem, priority: def.haPriority, antiAffinity: def.antiAffinity };
  }

  /** ha/<name> names this host (not assigned, not held), in one txn against the entry as read. */
  private async claimEntry(name: string): Promise<void> {
    const ns = this.pool.etcd.ns;
    const raw = (await ns.get(HA_PREFIX + name).exec()).kvs[0];
    const e = raw ? (JSON.parse(raw.value.toString()) as HaEntry) : undefined;
    if (e?.host === this.pool.host && !e.assigned && !e.held) return;
    const next: HaEntry = { host: this.pool.host, assigned: false, epoch: (e?.epoch ?? 0) + 1 };
    await ns.if(HA_PREFIX + name, 'Mod', '==', raw ? Number(raw.mod_revision) : 0).then(ns.put(HA_PREFIX + name).value(JSON.stringify(next))).commit();
  }

  /** ha/ entries and disk locks in step with what runs here (only while renewing, not fenced). */
  private async sync(): Promise<void> {
    const agent = this.agent;
    // fenced guests are no longer local: until the agent has handed their ha/ entries to the leader,
    // the clean-up below would take them for stopped on purpose and delete the entries
    if (!agent || agent.guard.hasFenced() || agent.fencePending() || agent.keeper.renewAge() > agent.keeper.renewEveryMs * 2) return;
    try {
      agent.setPeers(await this.peers());
      const ns = this.pool.etcd.ns;
      const me = this.pool.host;
      const local = new Set(this.ts.list().filter((d) => d.id !== 0).map((d) => d.name));
      const running = await this.pool.running();
      // (not a guest migrating out: its target may have claimed the entry already, and this
      // claim would take it back just before the guest leaves)
      for (const name of this.localHaGuests()) if (!isMigratingOut(this.ts.resolve(name))) await this.claimEntry(name);
      for (const kv of (await ns.getAll().prefix(HA_PREFIX).exec()).kvs) {
        const name = kv.key.toString().split(HA_PREFIX).pop()!;
        const e = JSON.parse(kv.value.toString()) as HaEntry;
        if (e.host !== me || e.assigned || local.has(name)) continue;
        const there = running.get(name)?.host;
        const guard = ns.if(HA_PREFIX + name, 'Mod', '==', Number(kv.mod_revision));
        if (there && there !== me) {
          // migrated away, and its target's own claim at the commit did not happen (its hook is
          // bounded, the target may die right after): the entry follows running/, so that the
          // target's death restarts the guest instead of leaving it to this host, alive
          const next: HaEntry = { host: there, assigned: false, epoch: e.epoch + 1 };
          await guard.then(ns.put(HA_PREFIX + name).value(JSON.stringify(next))).commit();
          this.log.info(`ha: ${name} runs on ${there} (migrated away): its ha/ entry names ${there}`);
        } else if (!there) {
          // stopped on purpose: no longer anyone's to have restarted
          await guard.then(ns.delete().key(HA_PREFIX + name)).commit();
        }
      }
      for (const kv of (await ns.getAll().prefix(LOCK_PREFIX).exec()).kvs) {
        const h = JSON.parse(kv.value.toString()) as LockHolder;
        if (h.host === me && !local.has(h.name) && running.get(h.name)?.host !== me) {
          const k = kv.key.toString();
          await ns.if(k, 'Value', '==', kv.value.toString()).then(ns.delete().key(k)).commit();
        }
      }
    } catch (e) {
      this.log.warn(`ha: sync failed: ${errorMessage(e)}`);
    }
  }
}
