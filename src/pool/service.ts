/**
 * A pooled xenod's pool side, made by the composition root when the xeno-pool-* keys are there:
 * the etcd connection, the host's membership and records, the pool's relocation key, pool-wide
 * definitions (names unique by one etcd transaction) and placement. The HTTP side (the door,
 * request forwarding, the /v1/pool routes) is in daemon/pool/.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { errorMessage, XenoError } from '../common/errors.js';
import type { DaemonConfig } from '../model/daemon-config.js';
import type { DomainConfig } from '../model/domain-config.js';
import type { Toolstack } from '../toolstack/toolstack.js';
import { poolCpuModel } from './cpu-model.js';
import { keys, PoolEtcd } from './etcd.js';
import { PoolMember, type HostRecord, type MemberRecord, type RunningRecord } from './member.js';
import { acquireGuestLocks, releaseGuestLocks } from './ha/disk-locks.js';
import { HA_PREFIX, type HaEntry } from './ha/restart.js';
import { place, type PoolDefinition } from './placement.js';

/** The pool's relocation PSK (hex), made once by the first host, readable by pool members only. */
const RELOCATION_KEY = 'relocation-key';

export interface HostRow extends HostRecord {
  state: 'up' | 'disabled' | 'down';
  /** Seconds since the host last refreshed its record (its lease is kept alive meanwhile). */
  leaseAgeS: number | null;
}

export class PoolService {
  readonly etcd: PoolEtcd;
  readonly member: PoolMember;

  constructor(
    readonly ts: Toolstack,
    readonly config: DaemonConfig,
    readonly log: Logger,
  ) {
    this.etcd = new PoolEtcd(config.pool!);
    this.member = new PoolMember(this.etcd, ts, config, log);
  }

  get host(): string {
    return this.etcd.host;
  }

  /**
   * Joins the pool; with no xeno-relocation-key-file of its own, the host migrates with the pool's
   * key (stored in etcd, so no key file is exchanged between hosts). An etcd out of reach does not
   * keep xenod from serving its own guests: the refresh keeps trying.
   */
  async start(): Promise<void> {
    try {
      await this.join();
    } catch (e) {
      this.log.error(`pool ${this.config.pool!.name}: cannot reach etcd at start (${errorMessage(e)}); retrying`);
      this.retry = setInterval(() => {
        this.join().then(() => {
          clearInterval(this.retry);
          this.log.info(`pool ${this.config.pool!.name}: joined after a retry`);
        }, () => undefined);
      }, 5_000);
      this.retry.unref();
    }
  }

  private retry?: NodeJS.Timeout;
  private joining?: Promise<void>;

  private join(): Promise<void> {
    this.joining ??= (async () => {
      if (!this.config.relocationKeyFile) this.config.relocationKeyFile = await this.relocationKeyFile();
      await this.member.start();
    })().finally(() => (this.joining = undefined));
    return this.joining;
  }

  close(): void {
    clearInterval(this.retry);
    this.member.stop();
    this.etcd.close();
  }

  private async relocationKeyFile(): Promise<string> {
    await this.etcd.ns.if(RELOCATION_KEY, 'Create', '==', 0).then(this.etcd.ns.put(RELOCATION_KEY).value(randomBytes(32).toString('hex'))).commit();
    const key = await this.etcd.ns.get(RELOCATION_KEY).string();
    if (!key) throw new Error('the pool has no relocation key');
    const file = path.join(this.config.stateDir, 'pool-relocation.psk');
    writeFileSync(file, key + '\n', { mode: 0o600 });
    return file;
  }

  // --- hosts ---------------------------------------------------------------------------

  async hostRows(): Promise<{ hosts: HostRow[]; cpu: ReturnType<typeof poolCpuModel> }> {
    const members = await this.etcd.listJson<MemberRecord>(keys.members);
    const live = await this.etcd.listJson<HostRecord>(keys.hosts);
    const running = await this.running();
    const rows: HostRow[] = [];
    for (const [name, m] of members) {
      const h = live.get(name);
      const guests = [...running.values()].filter((r) => r.host === name).length;
      if (h) rows.push({ ...h, guests, disabled: m.disabled ?? false, state: m.disabled ? 'disabled' : 'up', leaseAgeS: Math.max(0, Math.round((Date.now() - h.updatedAt) / 1000)) });
      else rows.push({ name, address: m.address, relocationPort: 0, apiPort: 0, memTotalKiB: 0, memFreeKiB: 0, cpus: 0, accel: 'tcg', cpuFlags: [], cpuModel: '', disabled: m.disabled ?? false, guests, version: '', updatedAt: 0, state: 'down', leaseAgeS: null });
    }
    rows.sort((a, b) => a.name.localeCompare(b.name));
    return { hosts: rows, cpu: poolCpuModel([...live.values()]) };
  }

  async liveHost(name: string): Promise<HostRecord | null> {
    return this.etcd.getJson<HostRecord>(keys.host(name));
  }

  async setDisabled(name: string, disabled: boolean): Promise<MemberRecord> {
    const raw = await this.etcd.ns.get(keys.member(name)).string();
    if (raw === null) throw new XenoError('BAD_REQUEST', `${name} is not a host of the pool`);
    const m = { ...(JSON.parse(raw) as MemberRecord), disabled };
    // compare-and-swap: a concurrent change of the record is not overwritten blindly
    const r = await this.etcd.ns.if(keys.member(name), 'Value', '==', raw).then(this.etcd.ns.put(keys.member(name)).value(JSON.stringify(m))).commit();
    if (!r.succeeded) throw new XenoError('BUSY', `the record of ${name} changed meanwhile: try again`);
    if (name === this.host) await this.member.refresh();
    return m;
  }

  /** Set by pool HA: what else an incoming migration's commit claims for this host (its ha/ entry). */
  onMigratedIn?: (name: string) => Promise<void>;

  /** An incoming migration's commit: running/<name> names this host at once (member.ts), then HA's claim. */
  async migratedIn(name: string, domid: number): Promise<void> {
    await this.member.claimMigratedIn(name, domid);
    await this.onMigratedIn?.(name);
  }

  /** pool-eject: refused while the host runs guests; its membership and record go. */
  async eject(name: string): Promise<void> {
    if (!(await this.etcd.getJson<MemberRecord>(keys.member(name)))) throw new XenoError('BAD_REQUEST', `${name} is not a host of the pool`);
    const guests = [...(await this.running()).entries()].filter(([, r]) => r.host === name).map(([n]) => n);
    if (guests.length) throw new XenoError('BAD_STATE', `host ${name} runs ${guests.join(', ')}: migrate or stop them before ejecting it`);
    if (name === this.host && this.ts.list().some((d) => d.id !== 0)) throw new XenoError('BAD_STATE', `host ${name} runs guests: migrate or stop them before ejecting it`);
    const r = await this.etcd.ns.if(keys.member(name), 'Create', '>', 0).then(this.etcd.ns.delete().key(keys.member(name)), this.etcd.ns.delete().key(keys.host(name))).commit();
    if (!r.succeeded) throw new XenoError('BAD_REQUEST', `${name} is not a host of the pool`);
    if (name === this.host) this.member.stop();
  }

  async running(): Promise<Map<string, RunningRecord>> {
    return this.etcd.listJson<RunningRecord>(keys.runningAll);
  }

  // --- pool-wide definitions ---------------------------------------------------------

  /** A new pool definition; the name is taken in one transaction (create revision == 0). */
  async define(def: Omit<PoolDefinition, 'definedOn' | 'definedAt'>, config: DomainConfig): Promise<PoolDefinition> {
    const full: PoolDefinition = { ...def, definedOn: this.host, definedAt: Date.now() };
    if (!config.uuid) full.overrides = [...(def.overrides ?? []), `uuid="${randomUUID()}"`];
    if (!(await this.etcd.createOnly(keys.def(def.name), full))) {
      const other = await this.etcd.getJson<PoolDefinition>(keys.def(def.name));
      throw new XenoError('DOMAIN_EXISTS', `a guest named ${def.name} is already defined in the pool${other ? ` (on ${other.definedOn})` : ''}`);
    }
    return full;
  }

  async definitions(): Promise<Map<string, PoolDefinition>> {
    return this.etcd.listJson<PoolDefinition>(keys.defs);
  }

  async definition(name: string): Promise<PoolDefinition> {
    const d = await this.etcd.getJson<PoolDefinition>(keys.def(name));
    if (!d) throw new XenoError('NO_SUCH_DOMAIN', `no guest named ${name} is defined in the pool`);
    return d;
  }

  async undefine(name: string): Promise<void> {
    await this.definition(name);
    const run = await this.etcd.getJson<RunningRecord>(keys.running(name));
    if (run) throw new XenoError('BAD_STATE', `${name} runs on ${run.host}: stop it before deleting its definition`);
    // deleted only if it still does not run (a start racing this delete wins, or this delete does)
    const r = await this.etcd.ns.if(keys.running(name), 'Create', '==', 0).then(this.etcd.ns.delete().key(keys.def(name))).commit();
    if (!r.succeeded) throw new XenoError('BAD_STATE', `${name} started meanwhile: stop it before deleting its definition`);
  }

  /** The host a pool guest starts on (`on` checked, or chosen by placement). */
  async placeOf(name: string, on?: string): Promise<{ def: PoolDefinition; host: HostRecord }> {
    const def = await this.definition(name);
    const running = await this.running();
    const cur = running.get(name);
    if (cur) throw new XenoError('DOMAIN_EXISTS', `${name} already runs on ${cur.host}`);
    const hosts = await this.etcd.listJson<HostRecord>(keys.hosts);
    const members = await this.etcd.listJson<MemberRecord>(keys.members);
    for (const [n, h] of hosts) h.disabled = members.get(n)?.disabled ?? h.disabled;
    const target = place(def, { hosts, running, defs: await this.definitions() }, on);
    return { def, host: hosts.get(target)! };
  }

  /**
   * Claims running/<name> for this host (one transaction: no second host can start it meanwhile),
   * then `launch`es it; the claim is released if the launch fails.
   */
  async startHere<T>(name: string, launch: () => Promise<T>, config?: DomainConfig): Promise<T> {
    const lease = this.etcd.hostLease();
    const claim: RunningRecord = { host: this.host, domid: -1, since: Date.now() };
    if (config) {
      // the writable disks' locks, running/ and (HA) ha/<name> in ONE txn (docs/pool-ha.md)
      await this.claimWithLocks(name, claim, config);
    } else if (!(await this.etcd.createOnly(keys.running(name), claim, lease))) {
      const cur = await this.etcd.getJson<RunningRecord>(keys.running(name));
      throw new XenoError('DOMAIN_EXISTS', `${name} already runs${cur ? ` on ${cur.host}` : ''}`);
    }
    try {
      const out = await launch();
      await this.member.refresh();
      return out;
    } catch (e) {
      await this.etcd.ns.if(keys.running(name), 'Value', '==', JSON.stringify(claim)).then(this.etcd.ns.delete().key(keys.running(name))).commit().catch(() => undefined);
      if (config) await releaseGuestLocks(this.etcd.ns, this.host, name, config.disks).catch(() => undefined);
      throw e;
    }
  }

  private async claimWithLocks(name: string, claim: RunningRecord, config: DomainConfig): Promise<void> {
    const cur = await this.etcd.getJson<RunningRecord>(keys.running(name));
    if (cur) throw new XenoError('DOMAIN_EXISTS', `${name} already runs on ${cur.host}`);
    const ha = config.ha ? (await this.etcd.ns.get(HA_PREFIX + name).exec()).kvs[0] : undefined;
    const entry: HaEntry | undefined = ha ? (JSON.parse(ha.value.toString()) as HaEntry) : undefined;
    await acquireGuestLocks(this.etcd.ns, this.etcd.hostLease(), {
      host: this.host, name, disks: config.disks, running: claim,
      extra: config.ha ? { key: HA_PREFIX + name, value: { host: this.host, assigned: false, epoch: (entry?.epoch ?? 0) + 1 } satisfies HaEntry, modRevision: ha?.mod_revision ?? '0' } : undefined,
    });
  }

  /** The CPU model a guest started here gets: the pool's levelled one under KVM. */
  cpuModelFor(): string | undefined {
    const rows = [...this.member.hosts.values()];
    const m = poolCpuModel(rows.length ? rows : [this.member.record(false)]);
    return m.accel === 'kvm' ? m.model : undefined;
  }
}
