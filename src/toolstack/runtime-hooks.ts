/**
 * Host-side runtime resources of a domain, around its QEMU's life: the per-domain CPU cgroup (the
 * credit scheduler's weight and cap) and the vcpu pinning of `cpus = "..."` / `xeno vcpu-pin`.
 *
 * afterLaunch: QEMU (every thread of it) goes into `<cpu-mount>/xeno-<instance>/<domain>`, with the
 * config's cpu_weight (default 256) and cap (default 0 = none); each vcpu thread gets its pinning.
 * afterAdopt: the same, re-applied (idempotent) to a QEMU an earlier xenod left running.
 * afterStop: the group is removed (QEMU has exited by then; a lingering task is retried).
 */
import { readdirSync } from 'node:fs';
import type { Logger } from 'pino';
import { XenoError, errorMessage } from '../common/errors.js';
import { parseCpuList } from '../config/cpu-list.js';
import { DomainCgroups, DEFAULT_WEIGHT, cgroupInstanceName, detectCgroups } from '../host/cgroups.js';
import { hostCpuCount, setThreadAffinity } from '../host/cpus.js';
import type { VcpuThread, Vm } from '../hypervisor/backend.js';
import type { DaemonConfig } from '../model/daemon-config.js';
import type { DomainConfig } from '../model/domain-config.js';
import type { DomainHooks, Prepared } from './hooks.js';
import type { DomainRecord } from './store.js';

/** Where per-vcpu pins (a `vcpu-pin DOM N CPUS` of one vcpu) are kept in DomainRecord.extra. */
export const VCPU_PINS_KEY = 'vcpuPins';

export type VcpuPins = Record<string, string>;

export function vcpuPinsOf(rec: Pick<DomainRecord, 'extra'>): VcpuPins {
  const v = rec.extra?.[VCPU_PINS_KEY];
  return v && typeof v === 'object' ? { ...(v as VcpuPins) } : {};
}

/** The CPU list a vcpu is pinned to: its own pin, else the domain's `cpus`, else none (all). */
export function pinFor(config: DomainConfig, pins: VcpuPins, index: number): string | undefined {
  return pins[String(index)] ?? config.cpus;
}

export interface RuntimeHooksDeps {
  config: Pick<DaemonConfig, 'stateDir'>;
  log: Logger;
  /** For tests: a ready cgroup manager, or null for none. Detected from the host when absent. */
  cgroups?: DomainCgroups | null;
  /** For tests: the host's CPU count. */
  nrCpus?: number;
}

export class RuntimeHooks implements DomainHooks {
  readonly cgroups: DomainCgroups | null;
  /** Why there are no cgroups (shown in errors). */
  readonly cgroupsUnavailable: string | null = null;
  private readonly log: Logger;
  private readonly nrCpusOverride?: number;
  /** onSpawn's cgroup moves, by QEMU pid, until afterLaunch (or afterStop, for a QEMU that never answered) takes them. */
  private readonly placing = new Map<number, Promise<void>>();

  constructor(deps: RuntimeHooksDeps) {
    this.log = deps.log;
    this.nrCpusOverride = deps.nrCpus;
    if (deps.cgroups !== undefined) {
      this.cgroups = deps.cgroups;
      if (!deps.cgroups) this.cgroupsUnavailable = 'cgroups disabled';
      return;
    }
    let cg: DomainCgroups | null = null;
    try {
      if (process.getuid?.() !== 0) throw new Error('xenod does not run as root');
      cg = new DomainCgroups(detectCgroups(), cgroupInstanceName(deps.config.stateDir));
      this.log.info({ version: cg.version, base: cg.base }, `CPU cgroups: v${cg.version} at ${cg.base}`);
    } catch (e) {
      this.cgroupsUnavailable = errorMessage(e);
      this.log.warn(`no CPU cgroups (cpu_weight/cap cannot be applied): ${this.cgroupsUnavailable}`);
    }
    this.cgroups = cg;
  }

  get nrCpus(): number {
    return this.nrCpusOverride ?? hostCpuCount();
  }

  /** The cgroup manager, or a clear error saying why there is none. */
  requireCgroups(): DomainCgroups {
    if (!this.cgroups) throw new XenoError('HOST_ERROR', `CPU weights and caps need a cpu cgroup, and this host has none usable: ${this.cgroupsUnavailable}`);
    return this.cgroups;
  }

  /** The domain's cgroup directory name (one per domain name, under this daemon's parent group). */
  groupName(rec: Pick<DomainRecord, 'name'>): string {
    return rec.name;
  }

  /** Refuses, before QEMU starts, a pinning naming CPUs this host lacks or a weight/cap without cgroups. */
  async beforeLaunch(rec: DomainRecord): Promise<Prepared> {
    const n = this.nrCpus;
    for (const list of [rec.config.cpus, ...Object.values(vcpuPinsOf(rec))]) {
      if (list !== undefined) parseCpuList(list, n);
    }
    const c = rec.config;
    if (!this.cgroups && ((c.cpuWeight !== undefined && c.cpuWeight !== DEFAULT_WEIGHT) || (c.cap ?? 0) > 0)) this.requireCgroups();
    return { nics: [] };
  }

  /**
   * The move into the domain's cgroup starts at the spawn: a write to cgroup.procs can wait ~10 ms
   * for an RCU grace period, which then passes while QEMU starts instead of after its QMP answers.
   */
  onSpawn(rec: DomainRecord, pid: number): void {
    const placing = this.placeInCgroup(rec, pid, true);
    placing.catch(() => undefined); // afterLaunch reports it
    this.placing.set(pid, placing);
  }

  async afterLaunch(rec: DomainRecord, vm: Vm): Promise<void> {
    const early = this.placing.get(vm.pid);
    this.placing.delete(vm.pid);
    await (early ?? this.placeInCgroup(rec, vm.pid, true));
    await this.pinAfterStart(rec, vm);
  }

  async afterAdopt(rec: DomainRecord, vm: Vm): Promise<void> {
    try {
      await this.placeInCgroup(rec, vm.pid, false);
      await this.pinAfterStart(rec, vm);
    } catch (e) {
      // The guest runs on; an adoption is never refused for its scheduling knobs.
      this.log.warn({ domain: rec.name }, `re-applying cgroup/pins of ${rec.name} after adoption failed: ${errorMessage(e)}`);
    }
  }

  async afterStop(rec: DomainRecord): Promise<void> {
    if (rec.pid) this.placing.delete(rec.pid);
    if (!this.cgroups) return;
    try {
      await this.cgroups.remove(this.groupName(rec));
    } catch (e) {
      this.log.warn({ domain: rec.name }, errorMessage(e));
    }
  }

  /** Groups of domains that no longer exist (their daemon died before afterStop). */
  async sweep(known: DomainRecord[]): Promise<void> {
    if (!this.cgroups) return;
    let names: string[];
    try {
      names = readdirSync(this.cgroups.base, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
    } catch {
      return;
    }
    for (const n of names) {
      if (known.some((r) => this.groupName(r) === n)) continue;
      await this.cgroups.remove(n).catch((e: unknown) => this.log.warn(`removing the cgroup ${n} of a gone domain: ${errorMessage(e)}`));
    }
  }

  /**
   * QEMU into the domain's group with the config's weight and cap. Without cgroups, a config that
   * asks for a weight or a cap is an error (strict, at launch); the defaults are simply skipped.
   */
  async placeInCgroup(rec: DomainRecord, pid: number, strict: boolean): Promise<void> {
    const c = rec.config;
    const wanted = (c.cpuWeight !== undefined && c.cpuWeight !== DEFAULT_WEIGHT) || (c.cap ?? 0) > 0;
    if (!this.cgroups) {
      if (wanted && strict) this.requireCgroups();
      return;
    }
    const name = this.groupName(rec);
    try {
      this.cgroups.create(name);
      this.cgroups.setWeight(name, c.cpuWeight ?? DEFAULT_WEIGHT);
      this.cgroups.setCap(name, c.cap ?? 0);
      await this.cgroups.addPid(name, pid);
    } catch (e) {
      if (wanted || strict) throw e;
      this.log.warn({ domain: rec.name }, errorMessage(e));
    }
  }

  /** The pins of a started QEMU: its vcpu threads are asked for only when the domain pins some (the toolstack asks for them too). */
  private async pinAfterStart(rec: DomainRecord, vm: Vm): Promise<void> {
    if (rec.config.cpus === undefined && Object.keys(vcpuPinsOf(rec)).length === 0) return;
    await this.applyPins(rec, await vm.vcpuThreads());
  }

  /** Pins each given vcpu thread to its CPU list (its own pin, else the domain's `cpus`); unpinned ones are left alone. */
  async applyPins(rec: Pick<DomainRecord, 'config' | 'extra' | 'name'>, threads: VcpuThread[]): Promise<void> {
    const pins = vcpuPinsOf(rec);
    const n = this.nrCpus;
    for (const t of threads) {
      const list = pinFor(rec.config, pins, t.index);
      if (list === undefined) continue; // a new thread already may run anywhere
      await setThreadAffinity(t.threadId, parseCpuList(list, n));
    }
  }
}
