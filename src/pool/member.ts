/**
 * A pooled xenod's presence in etcd: its membership (`members/<host>`, persistent: the pool's
 * list of hosts), its host record (`hosts/<host>`, with the host lease: it vanishes when the host
 * stops renewing), refreshed every few seconds with free memory, cpus, accelerator and CPU flags,
 * and where its guests run (`running/<name>`, with the lease too).
 */
import type { Logger } from 'pino';
import { errorMessage } from '../common/errors.js';
import { XENO_VERSION } from '../common/version.js';
import type { DaemonConfig } from '../model/daemon-config.js';
import type { Toolstack } from '../toolstack/toolstack.js';
import { hostCpuFlags, poolCpuModel } from './cpu-model.js';
import { keys, type PoolEtcd } from './etcd.js';

export interface HostRecord {
  name: string;
  address: string;
  relocationPort: number;
  apiPort: number;
  memTotalKiB: number;
  memFreeKiB: number;
  cpus: number;
  accel: 'kvm' | 'tcg';
  cpuFlags: string[];
  /** The pool's levelled model as this host computed it at its last refresh. */
  cpuModel: string;
  disabled: boolean;
  guests: number;
  version: string;
  /** ms since the epoch. */
  updatedAt: number;
}

export interface MemberRecord {
  name: string;
  address: string;
  /** ms since the epoch. */
  joinedAt: number;
  /** host-disable: no new placements on it (kept here: it outlives the host's lease). */
  disabled?: boolean;
}

export interface RunningRecord {
  host: string;
  domid: number;
  /** ms since the epoch. */
  since: number;
}

export const REFRESH_MS = 2_000;

export class PoolMember {
  private timer?: NodeJS.Timeout;
  private refreshing?: Promise<void>;
  /** The names this host last wrote in running/. */
  private mine = new Map<string, number>();
  /** Pool members as of the last refresh (who may use the pool door). */
  members = new Map<string, MemberRecord>();
  hosts = new Map<string, HostRecord>();

  constructor(
    readonly etcd: PoolEtcd,
    private readonly ts: Toolstack,
    private readonly config: DaemonConfig,
    private readonly log: Logger,
  ) {}

  get name(): string {
    return this.etcd.host;
  }

  /** Joins (members/<host> if absent) and puts the first host record; refreshes from then on. */
  async start(): Promise<void> {
    const pool = this.config.pool!;
    const member: MemberRecord = { name: this.name, address: pool.address, joinedAt: Date.now() };
    if (await this.etcd.createOnly(keys.member(this.name), member)) this.log.info(`pool ${pool.name}: joined as ${this.name}`);
    this.etcd.onLeaseLost((e) => {
      this.log.warn(`pool: the host lease was lost (${errorMessage(e)}); a new one is taken`);
      this.forgetRunning();
    });
    await this.refresh();
    this.timer = setInterval(() => void this.refresh(), REFRESH_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One refresh at a time; a caller (a start, a destroy) may ask for one now and wait for it. */
  refresh(): Promise<void> {
    this.refreshing ??= this.doRefresh().finally(() => (this.refreshing = undefined));
    return this.refreshing;
  }

  private async doRefresh(): Promise<void> {
    try {
      this.members = await this.etcd.listJson<MemberRecord>(keys.members);
      this.hosts = await this.etcd.listJson<HostRecord>(keys.hosts);
      const me = this.members.get(this.name);
      const rec = this.record(me?.disabled ?? false);
      const lease = this.etcd.hostLease();
      await lease.put(keys.host(this.name)).value(JSON.stringify(rec));
      this.hosts.set(this.name, rec);
      await this.syncRunning();
    } catch (e) {
      this.log.warn(`pool: refresh failed: ${errorMessage(e)}`);
    }
  }

  record(disabled: boolean): HostRecord {
    const h = this.ts.hostInfo();
    const pool = this.config.pool!;
    const cpuFlags = hostCpuFlags();
    const others = [...this.hosts.values()].filter((x) => x.name !== this.name);
    const model = poolCpuModel([{ accel: h.accel, cpuFlags }, ...others]);
    return {
      name: this.name, address: pool.address, relocationPort: this.config.relocationPort, apiPort: pool.apiPort,
      memTotalKiB: h.total_memory * 1024, memFreeKiB: h.free_memory * 1024, cpus: h.nr_cpus, accel: h.accel, cpuFlags,
      cpuModel: model.model, disabled, guests: this.localGuests().length, version: XENO_VERSION, updatedAt: Date.now(),
    };
  }

  private localGuests() {
    return this.ts.list().filter((d) => d.id !== 0);
  }

  /**
   * running/<name> for each local guest (a name another live host holds is left to it and logged),
   * and our stale entries removed.
   */
  private async syncRunning(): Promise<void> {
    const lease = this.etcd.hostLease();
    const local = new Map(this.localGuests().map((d) => [d.name, d.id]));
    for (const [name, domid] of local) {
      if (this.mine.get(name) === domid) continue;
      const cur = await this.etcd.getJson<RunningRecord>(keys.running(name));
      const rec: RunningRecord = { host: this.name, domid, since: Date.now() };
      if (cur && cur.host !== this.name) {
        // the other host's entry lives with its lease: once it is gone, ours goes in
        this.log.warn(`pool: guest ${name} is also recorded on ${cur.host}`);
        continue;
      }
      if (!cur) {
        if (!(await this.etcd.createOnly(keys.running(name), rec, lease))) continue;
      } else {
        await lease.put(keys.running(name)).value(JSON.stringify(rec));
      }
      this.mine.set(name, domid);
    }
    for (const name of [...this.mine.keys()]) {
      if (local.has(name)) continue;
      // deleted only while it is still ours, as read (a migration's target may have taken it over)
      const raw = await this.etcd.ns.get(keys.running(name)).string();
      if (raw !== null && (JSON.parse(raw) as RunningRecord).host === this.name) {
        await this.etcd.ns.if(keys.running(name), 'Value', '==', raw).then(this.etcd.ns.delete().key(keys.running(name))).commit();
      }
      this.mine.delete(name);
    }
  }

  /**
   * A guest migrated in, at its commit (before the source is told ok): running/<name> names this
   * host from now on, in one txn against the entry as read (the source's, or none), so that the
   * pool view and pool-eject never see the guest on the host it left, nor on no host.
   */
  async claimMigratedIn(name: string, domid: number): Promise<void> {
    const key = keys.running(name);
    const cur = (await this.etcd.ns.get(key).exec()).kvs[0];
    const rec: RunningRecord = { host: this.name, domid, since: Date.now() };
    const lease = this.etcd.hostLease();
    const guard = cur ? this.etcd.ns.if(key, 'Mod', '==', Number(cur.mod_revision)) : this.etcd.ns.if(key, 'Create', '==', 0);
    const r = await guard.then(lease.put(key).value(JSON.stringify(rec))).commit();
    if (!r.succeeded) throw new Error(`running/${name} changed meanwhile`);
    this.mine.set(name, domid);
  }

  /** The lease was replaced: every running/ entry must be written again with the new one. */
  forgetRunning(): void {
    this.mine.clear();
  }
}
