/**
 * Extension points around a domain's life, where host resources (network backends, cgroups, pins)
 * are set up and torn down. Each feature implements the parts it needs; compose() chains them.
 */
import type { NicBackend } from '../hypervisor/qemu/argv.js';
import type { Vm } from '../hypervisor/backend.js';
import type { DomainConfig } from '../model/domain-config.js';
import type { DomainRecord } from './store.js';

export interface Prepared {
  nics: NicBackend[];
  /** A config to launch with instead of the stored one (e.g. an extended kernel command line). */
  config?: DomainConfig;
}

export interface DomainHooks {
  /** Before QEMU starts: create host-side backends. Must undo its own work if it throws. */
  beforeLaunch(rec: DomainRecord): Promise<Prepared>;
  /**
   * QEMU was just spawned (its QMP not yet answering): start what needs only its pid, so that it
   * runs beside QEMU's own start; afterLaunch waits for it. Must not throw.
   */
  onSpawn?(rec: DomainRecord, pid: number): void;
  /** QEMU is up (paused or running): apply pins, cgroups... */
  afterLaunch(rec: DomainRecord, vm: Vm): Promise<void>;
  /** A running domain is about to open more host files (block-attach, cd-insert): `next` is its config with them. */
  beforeHotplug?(rec: DomainRecord, next: DomainConfig): Promise<void>;
  /** A running domain let go of host files (block-detach, cd-eject): `next` is its config without them. */
  afterUnplug?(rec: DomainRecord, next: DomainConfig): Promise<void>;
  /** A restarted xenod found this QEMU still running. */
  afterAdopt(rec: DomainRecord, vm: Vm): Promise<void>;
  /** QEMU is gone: remove what beforeLaunch/afterLaunch made. Must not throw for missing things. */
  afterStop(rec: DomainRecord): Promise<void>;
  /** At daemon start, after adoption: remove what belongs to no domain in `known` (a crash's leftovers). */
  sweep?(known: DomainRecord[]): Promise<void>;
}

export const NO_HOOKS: DomainHooks = {
  beforeLaunch: async () => ({ nics: [] }),
  afterLaunch: async () => undefined,
  afterAdopt: async () => undefined,
  afterStop: async () => undefined,
};

/** Chain several hook sets; beforeLaunch results are merged in order. */
export function composeHooks(...all: Array<Partial<DomainHooks>>): DomainHooks {
  return {
    async beforeLaunch(rec) {
      const out: Prepared = { nics: [] };
      for (const h of all) {
        if (!h.beforeLaunch) continue;
        const p = await h.beforeLaunch({ ...rec, config: out.config ?? rec.config });
        out.nics.push(...p.nics);
        if (p.config) out.config = p.config;
      }
      return out;
    },
    onSpawn(rec, pid) {
      for (const h of all) h.onSpawn?.(rec, pid);
    },
    async afterLaunch(rec, vm) {
      for (const h of all) await h.afterLaunch?.(rec, vm);
    },
    async beforeHotplug(rec, next) {
      for (const h of all) await h.beforeHotplug?.(rec, next);
    },
    async afterAdopt(rec, vm) {
      for (const h of all) await h.afterAdopt?.(rec, vm);
    },
    async afterUnplug(rec, next) {
      for (const h of all) await h.afterUnplug?.(rec, next);
    },
    async afterStop(rec) {
      // Every hook tears down, even after one failed: a failed ACL restore must not leave the
      // domain's vifs and firewall tables behind. The first failure is reported.
      let first: unknown;
      for (const h of all) {
        try {
          await h.afterStop?.(rec);
        } catch (e) {
          first ??= e;
        }
      }
      if (first !== undefined) throw first;
    },
    async sweep(known) {
      for (const h of all) await h.sweep?.(known);
    },
  };
}
