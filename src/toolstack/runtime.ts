/**
 * Runtime control of running domains, as xm does it: memory through the virtio balloon (mem-set,
 * mem-max), vcpu hot-plug (vcpu-set), vcpu pinning (vcpu-pin), the credit scheduler's weight and
 * cap (sched-credit) on the domain's cgroup, and vcpu-list. Every change runs under the domain's
 * lock (no two QMP transactions on one domain interleave) and is written to the stored config, so
 * a reboot or a restore keeps it.
 */
import os from 'node:os';
import { XenoError, errorMessage } from '../common/errors.js';
import { crashPoint } from '../common/test-crash.js';
import { formatCpuList, parseCpuList } from '../config/cpu-list.js';
import { parseMemSize } from '../config/sizes.js';
import { DEFAULT_WEIGHT, MAX_WEIGHT } from '../host/cgroups.js';
import { setThreadAffinity } from '../host/cpus.js';
import { ensureFits } from '../host/memory.js';
import { vcpuRows, type VcpuRow } from '../host/vcpus.js';
import { waitVmEvent, type EventWait } from '../hypervisor/vm-events.js';
import type { Vm } from '../hypervisor/backend.js';
import { queryJit, tcgFreeRegions } from '../hypervisor/qemu/tcg-regions.js';
import type { QmpEvent } from '../hypervisor/qemu/qmp.js';
import type { DomainConfig } from '../model/domain-config.js';
import { syncGuestVcpus } from './guest-agent-ops.js';
import { RuntimeHooks, VCPU_PINS_KEY, pinFor, vcpuPinsOf, type VcpuPins } from './runtime-hooks.js';
import { sleepUnlessAborted, unlessAborted } from './long-ops.js';
import type { DomainRecord } from './store.js';
import type { Toolstack } from './toolstack.js';

const MiB = 1024 * 1024;

/**
 * DomainRecord.extra key: the QEMU pid in which a vcpu was unplugged ("unplugged since boot"; see
 * unplugTrap). Persisted with the record; a fresh boot or restart has a new pid, which clears it.
 */
export const UNPLUGGED_KEY = 'vcpuUnpluggedPid';

/**
 * QEMU before 8.0 under TCG, once a vcpu was unplugged in this QEMU: plugging one again corrupts
 * its heap, and a save or migration waits forever on the unplugged vcpu in its migration thread
 * (the guest stays paused, even destroy queues behind it).
 */
export function unplugTrap(rec: DomainRecord, qemuVersion: string): boolean {
  if (rec.accel !== 'tcg' || rec.pid === null || rec.extra[UNPLUGGED_KEY] !== rec.pid) return false;
  return Number(/^(\d+)\./.exec(qemuVersion)?.[1] ?? 0) < 8;
}

/** Refuses a save or migration QEMU cannot finish (see unplugTrap), before anything is touched. */
export function refuseStateCopyAfterUnplug(rec: DomainRecord, qemuVersion: string, what: string): void {
  if (!unplugTrap(rec, qemuVersion)) return;
  throw new XenoError(
    'BAD_STATE',
    `${what} ${rec.name}: refused: a vcpu was unplugged from this domain since its boot, and QEMU ${qemuVersion} under TCG ` +
      `never finishes saving or migrating such a guest (it hangs with the guest paused; fixed in QEMU 8.0). The guest keeps ` +
      `running; ${what} works again after its next boot (a reboot starts a fresh QEMU)`,
  );
}

export interface MemSetResult {
  name: string;
  id: number;
  /** MiB asked for (now the domain's memory). */
  target: number;
  /** MiB the balloon reports the guest has, when last asked. */
  actual: number | null;
  /** The balloon reached the target within the wait. */
  reached: boolean;
  waitedMs: number;
  /** The domain is not running (paused...): the balloon moves once it runs; not waited for. */
  deferred?: boolean;
  /** Another mem-set replaced this target while it was being waited for. */
  superseded?: boolean;
  /** A destroy of the domain ended the wait. */
  cancelled?: boolean;
  /** Set when the target was not (yet) reached: the gap and why. */
  message?: string;
}

export interface MemMaxResult {
  name: string;
  id: number;
  maxmem: number;
  memory: number;
  /** MiB of RAM the running QEMU was started with. */
  bootMemory: number | null;
  /** The new maxmem is above bootMemory: the extra is usable only from the next start of QEMU. */
  nextBoot: boolean;
  message?: string;
}

export interface VcpuSetResult {
  name: string;
  id: number;
  requested: number;
  /** Vcpus present now. */
  vcpus: number;
  /** Vcpu indexes whose unplug the guest has not completed yet. */
  pending: number[];
  message?: string;
  /** CPUs online inside the guest, as its agent reports them after the change (absent: no agent). */
  guestOnline?: number;
}

export interface VcpuListRow extends Omit<VcpuRow, 'threadId'> {
  /** An unplug was requested and the guest has not released the vcpu yet. */
  pending?: boolean;
}

export interface SchedCreditRow {
  name: string;
  id: number;
  weight: number;
  cap: number;
}

export interface RuntimeOptions {
  /** How long mem-set waits for the balloon by default. */
  balloonTimeoutMs?: number;
  /** How long vcpu-set waits for the guest to release a vcpu (DEVICE_DELETED). */
  unplugTimeoutMs?: number;
}

interface HotpluggableCpu {
  type: string;
  'vcpus-count': number;
  props: Record<string, number>;
  'qom-path'?: string;
}

interface CpuFast {
  'cpu-index': number;
  'thread-id': number;
  'qom-path': string;
}

interface Slot {
  /** Position in topology order = QEMU's cpu-index. */
  index: number;
  type: string;
  props: Record<string, number>;
  qomPath?: string;
  threadId?: number;
}

const TOPOLOGY_ORDER = ['socket-id', 'die-id', 'cluster-id', 'core-id', 'thread-id'];

/**
 * DEVICE_DELETED of a vcpu being unplugged. QEMU 7.2 reports the CPU's children (its lapic:
 * `<cpu path>/lapic`) as it goes, and the CPU object itself only when it is finalized (maybe
 * later), so the event of the CPU or of any child of it counts; the caller then confirms that the
 * vcpu has left query-cpus-fast.
 */
export function isUnplugOf(e: QmpEvent, qomPath: string): boolean {
  if (e.event !== 'DEVICE_DELETED') return false;
  const p = typeof e.data.path === 'string' ? e.data.path : '';
  return p === qomPath || p.startsWith(qomPath + '/') || (typeof e.data.device === 'string' && qomPath.endsWith(`/${e.data.device}`));
}

function byTopology(a: HotpluggableCpu, b: HotpluggableCpu): number {
  for (const k of TOPOLOGY_ORDER) {
    const d = (a.props[k] ?? 0) - (b.props[k] ?? 0);
    if (d) return d;
  }
  return 0;
}

function badRequest(msg: string): XenoError {
  return new XenoError('BAD_REQUEST', msg);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A whole number from a CLI/API argument, or a clear error naming what it is. */
export function parseCount(v: unknown, what: string): number {
  const s = typeof v === 'number' ? String(v) : typeof v === 'string' ? v.trim() : '';
  if (!/^\d+$/.test(s) || !Number.isSafeInteger(Number(s))) throw badRequest(`${what} must be a whole number (got '${String(v)}')`);
  return Number(s);
}

/** A memory size argument in MiB (plain numbers are MiB; b/k/m/g/t suffixes accepted). */
export function parseSizeArg(v: unknown, what: string): number {
  if (typeof v !== 'number' && typeof v !== 'string') throw badRequest(`${what}: a size is required (e.g. 512, 512m, 1g)`);
  try {
    return parseMemSize(v);
  } catch (e) {
    throw badRequest(`${what}: ${errorMessage(e)}`);
  }
}

export class Runtime {
  readonly hooks: RuntimeHooks;
  private readonly balloonTimeoutMs: number;
  private readonly unplugTimeoutMs: number;
  /** domid -> vcpu index -> QOM path of the vcpus being unplugged. */
  private readonly pending = new Map<number, Map<number, string>>();

  constructor(
    readonly ts: Toolstack,
    hooks?: RuntimeHooks,
    opts: RuntimeOptions = {},
  ) {
    this.hooks = hooks ?? new RuntimeHooks({ config: ts.deps.config, log: ts.deps.log });
    this.balloonTimeoutMs = opts.balloonTimeoutMs ?? 30_000;
    this.unplugTimeoutMs = opts.unplugTimeoutMs ?? 30_000;
  }

  private vmOf(rec: DomainRecord): Vm {
    return this.ts.liveOf(rec).vm;
  }

  /** Writes a new config (and extras) to the store; the record passed is updated in place. */
  private save(rec: DomainRecord, config: DomainConfig, extra?: Record<string, unknown>): void {
    rec.config = config;
    if (extra) rec.extra = extra;
    this.ts.deps.store.update(rec.id, extra ? { config, extra } : { config });
  }

  // ---- memory -----------------------------------------------------------------------------

  /** MiB of RAM the running QEMU has (it was started with `-m` = the maxmem of that time). */
  private async bootMemory(vm: Vm): Promise<number | null> {
    try {
      const s = await vm.command<{ 'base-memory': number; 'plugged-memory'?: number }>('query-memory-size-summary');
      return Math.round((s['base-memory'] + (s['plugged-memory'] ?? 0)) / MiB);
    } catch {
      return null;
    }
  }

  private async balloonActual(vm: Vm): Promise<number | null> {
    try {
      const b = await vm.command<{ actual: number }>('query-balloon', undefined, 5000);
      return b.actual / MiB;
    } catch {
      return null;
    }
  }

  /**
   * `xm mem-set`: a new balloon target within [xeno-min-guest-mem, maxmem]; waits (bounded) until
   * the guest's balloon reaches it, and otherwise reports the gap. What was reached is kept.
   */
  async memSet(dom: string, size: unknown, opts: { wait?: boolean; timeoutMs?: number } = {}): Promise<MemSetResult> {
    const mb = parseSizeArg(size, 'mem-set');
    const t0 = Date.now();
    // The transaction (checks, QMP balloon, stored config) under the domain's lock...
    const { rec, vm, res } = await this.ts.withDomain(dom, 'mem-set', async (rec) => {
      const c = rec.config;
      const floor = this.ts.deps.config.minGuestMem;
      if (mb < floor) {
        throw badRequest(`mem-set ${rec.name}: ${mb} MiB is below the ${floor} MiB floor a guest needs to stay alive (xeno-min-guest-mem in the daemon config)`);
      }
      if (mb > c.maxmem) {
        throw badRequest(`mem-set ${rec.name}: ${mb} MiB is above its maxmem of ${c.maxmem} MiB (raise it first with mem-max)`);
      }
      const next = this.ts.validateChange(rec, { ...c, memory: mb }, 'mem-set');
      const vm = this.vmOf(rec);
      const boot = await this.bootMemory(vm);
      if (boot !== null && mb > boot) {
        throw badRequest(
          `mem-set ${rec.name}: ${mb} MiB is above the ${boot} MiB its QEMU was started with; the raised maxmem (${c.maxmem} MiB) takes effect at the next boot of the domain`,
        );
      }
      // Charged at maxmem + overhead already: a target within maxmem never over-commits the host.
      ensureFits(this.ts.memoryAccount(rec.id), this.ts.chargeOf(c), `set the memory of ${rec.name}`);
      await vm.command('balloon', { value: mb * MiB });
      crashPoint('mem-set:ballooned');
      const old = c.memory;
      this.save(rec, next);
      this.ts.event(rec, 'mem-set', `memory target of ${rec.name}: ${old} -> ${mb} MiB`);
      const res: MemSetResult = { name: rec.name, id: rec.id, target: mb, actual: null, reached: false, waitedMs: 0 };
      return { rec, vm, res };
    });
    const there = (a: number | null) => a !== null && Math.abs(a - mb) < 1;
    if (opts.wait === false || rec.state !== 'running') {
      res.actual = await this.balloonActual(vm);
      res.reached = there(res.actual);
      if (!res.reached && rec.state !== 'running') {
        res.deferred = true;
        res.message = `${rec.name} is ${rec.state}: the balloon moves to ${mb} MiB once it runs again (now ${fmtMb(res.actual)})`;
      }
      return res;
    }
    // ...and the wait for the guest outside it (a destroy or another mem-set need not queue behind
    // it), as a long operation a destroy ends at once.
    const timeoutMs = opts.timeoutMs ?? this.balloonTimeoutMs;
    return this.ts.longOperation(rec.id, 'mem-set', (signal) => this.waitBalloon(rec, vm, mb, res, t0, timeoutMs, signal));
  }

  private async waitBalloon(rec: DomainRecord, vm: Vm, mb: number, res: MemSetResult, t0: number, timeoutMs: number, signal: AbortSignal): Promise<MemSetResult> {
    const there = (a: number | null) => a !== null && Math.abs(a - mb) < 1;
    let why = '';
    for (;;) {
      res.actual = await this.balloonActual(vm);
      res.waitedMs = Date.now() - t0;
      if (there(res.actual)) {
        res.reached = true;
        res.actual = Math.round(res.actual!);
        return res;
      }
      const now = this.ts.deps.store.get(rec.id);
      if (!now || vm.exited) {
        why = 'the domain is gone';
        break;
      }
      if (now.config.memory !== mb) {
        why = `another mem-set changed the target to ${now.config.memory} MiB`;
        res.superseded = true;
        break;
      }
      if (res.waitedMs >= timeoutMs) {
        why = `not within ${(timeoutMs / 1000).toFixed(0)} s`;
        break;
      }
      // a QMP query costs well under a millisecond
      if (!(await sleepUnlessAborted(5, signal))) {
        why = `the wait was cancelled: ${errorMessage(signal.reason)}`;
        res.cancelled = true;
        break;
      }
    }
    const gap = res.actual === null ? null : Math.round(Math.abs(res.actual - mb));
    res.message =
      `the balloon of ${rec.name} has not reached its ${mb} MiB target (${why}): ` +
      `the guest has ${fmtMb(res.actual)}${gap === null ? '' : ` (${gap} MiB ${res.actual! > mb ? 'more' : 'less'} than the target)`}; ` +
      `the target stays set and the guest may still get there`;
    this.ts.event(rec, 'mem-set', res.message);
    return res;
  }

  /** `xm mem-max`: the most memory the domain may have; above what QEMU started with = next boot. */
  async memMax(dom: string, size: unknown): Promise<MemMaxResult> {
    const mb = parseSizeArg(size, 'mem-max');
    // Raising maxmem takes host memory: under the host-memory lock, as create/restore do. The
    // domain's lock first, host memory inside it: waiting for a busy domain never holds up the
    // host's creates.
    return this.ts.withDomain(dom, 'mem-set', (rec) => this.ts.withHostMemory(async () => {
      const c = rec.config;
      const floor = this.ts.deps.config.minGuestMem;
      if (mb < floor) throw badRequest(`mem-max ${rec.name}: ${mb} MiB is below the ${floor} MiB floor (xeno-min-guest-mem)`);
      if (mb < c.memory) {
        throw badRequest(`mem-max ${rec.name}: ${mb} MiB is below its current memory of ${c.memory} MiB (lower that first with mem-set)`);
      }
      const next = this.ts.validateChange(rec, { ...c, maxmem: mb }, 'mem-max');
      if (mb > c.maxmem) ensureFits(this.ts.memoryAccount(rec.id), this.ts.chargeOf(next), `raise the maxmem of ${rec.name} to ${mb} MiB`);
      const boot = await this.bootMemory(this.vmOf(rec));
      const old = c.maxmem;
      this.save(rec, next);
      const res: MemMaxResult = { name: rec.name, id: rec.id, maxmem: mb, memory: c.memory, bootMemory: boot, nextBoot: boot !== null && mb > boot };
      if (res.nextBoot) {
        res.message =
          `maxmem of ${rec.name} is now ${mb} MiB, but its QEMU was started with ${boot} MiB: memory above ${boot} MiB ` +
          `becomes usable at the next boot of the domain (xeno reboot, or a new create: both start a new QEMU)`;
      }
      this.ts.event(rec, 'mem-max', `maxmem of ${rec.name}: ${old} -> ${mb} MiB${res.nextBoot ? ' (above the running QEMU\'s memory: next boot)' : ''}`);
      return res;
    }));
  }

  // ---- vcpus ------------------------------------------------------------------------------

  /** Every vcpu slot of the domain's QEMU in cpu-index order, with the threads of present ones. */
  private async slots(vm: Vm): Promise<Slot[]> {
    const [hot, fast] = await Promise.all([
      vm.command<HotpluggableCpu[]>('query-hotpluggable-cpus'),
      vm.command<CpuFast[]>('query-cpus-fast'),
    ]);
    const byPath = new Map(fast.map((f) => [f['qom-path'], f]));
    return [...hot].sort(byTopology).map((h, i) => {
      const f = h['qom-path'] ? byPath.get(h['qom-path']) : undefined;
      return { index: f ? f['cpu-index'] : i, type: h.type, props: h.props, qomPath: h['qom-path'], threadId: f?.['thread-id'] };
    });
  }

  private pendingOf(id: number): Map<number, string> {
    let m = this.pending.get(id);
    if (!m) this.pending.set(id, (m = new Map()));
    return m;
  }

  /** After a vcpu change: the toolstack's thread list, and the stored vcpu count. */
  private async refreshVcpus(rec: DomainRecord, vm: Vm): Promise<number> {
    const threads = await vm.vcpuThreads();
    const live = this.ts.liveOf(rec);
    live.vcpuTids = threads.map((t) => t.threadId);
    const pins = vcpuPinsOf(rec);
    const present = new Set(threads.map((t) => String(t.index)));
    const kept: VcpuPins = Object.fromEntries(Object.entries(pins).filter(([k]) => present.has(k)));
    const extra = Object.keys(kept).length !== Object.keys(pins).length ? { ...rec.extra, [VCPU_PINS_KEY]: kept } : undefined;
    if (rec.config.vcpus !== threads.length || extra) this.save(rec, { ...rec.config, vcpus: threads.length }, extra);
    return threads.length;
  }

  /** Waits for QEMU's DEVICE_DELETED of one vcpu (the guest let it go). */
  private waitDeleted(vm: Vm, qomPath: string, timeoutMs: number): EventWait {
    return waitVmEvent(vm, (e) => isUnplugOf(e, qomPath), timeoutMs);
  }

  /** Whether a vcpu has left QEMU's vcpu list (polled up to waitMs). */
  private async vcpuGone(vm: Vm, qomPath: string, waitMs: number): Promise<boolean> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      try {
        const fast = await vm.command<CpuFast[]>('query-cpus-fast');
        if (!fast.some((f) => f['qom-path'] === qomPath)) return true;
      } catch {
        return false;
      }
      if (Date.now() >= deadline) return false;
      await sleep(10);
    }
  }

  /** A late DEVICE_DELETED (after vcpu-set gave up waiting): forget the pending unplug then. */
  private watchLateUnplug(rec: DomainRecord, vm: Vm, index: number, qomPath: string): void {
    const onEvent = (e: QmpEvent) => {
      if (!isUnplugOf(e, qomPath)) return;
      vm.off('qmp-event', onEvent);
      this.pending.get(rec.id)?.delete(index);
      void this.ts
        .withDomain(String(rec.id), 'console', async (r) => {
          const n = await this.refreshVcpus(r, this.vmOf(r));
          this.ts.event(r, 'vcpu-set', `${r.name} released vcpu ${index} late; it has ${n} vcpus`);
        })
        .catch(() => undefined);
    };
    vm.on('qmp-event', onEvent);
    vm.once('exit', () => vm.off('qmp-event', onEvent));
  }

  /** Refuses a plug QEMU 7.2 would abort on (tcg-regions.ts), before anything is touched. */
  private async refuseFullTcgBuffer(rec: DomainRecord, vm: Vm, threads: number, want: number): Promise<void> {
    const jit = await queryJit(vm);
    if (!jit) return;
    const free = tcgFreeRegions({ ...jit, maxCpus: rec.config.maxvcpus, threads });
    if (free >= want) return;
    throw new XenoError(
      'BAD_STATE',
      `vcpu-set ${rec.name}: refused: QEMU under TCG aborts when a vcpu is plugged while its translation buffer has no free region left ` +
        `(${Math.round(jit.usedBytes / 1048576)} of ${Math.round(jit.capacityBytes / 1048576)} MiB used, ${free} region${free === 1 ? '' : 's'} free for ${want} new vcpu${want === 1 ? '' : 's'}). ` +
        `The buffer starts afresh when it fills up; a reboot starts a fresh QEMU. The guest keeps ${threads} vcpu${threads === 1 ? '' : 's'}`,
    );
  }

  /**
   * `xm vcpu-set`: hot-plug (device_add with the props query-hotpluggable-cpus gives) or unplug
   * (device_del, completed by the guest: DEVICE_DELETED, waited for with a timeout) up to maxvcpus.
   * Vcpu 0 is never removed.
   */
  async vcpuSet(dom: string, count: unknown, opts: { timeoutMs?: number } = {}): Promise<VcpuSetResult> {
    const n = parseCount(count, 'vcpu-set: the number of vcpus');
    return this.ts.withDomain(dom, 'vcpu-set', (rec) => this.ts.longOperation(rec.id, 'vcpu-set', async (signal) => {
      const c = rec.config;
      if (n < 1) throw badRequest(`vcpu-set ${rec.name}: a domain needs at least 1 vcpu`);
      if (n > c.maxvcpus) {
        throw badRequest(`vcpu-set ${rec.name}: ${n} vcpus is above its maxvcpus of ${c.maxvcpus} (set maxvcpus in the config; it takes effect at the next boot)`);
      }
      this.ts.validateChange(rec, { ...c, vcpus: n }, 'vcpu-set');
      const vm = this.vmOf(rec);
      const slots = await this.slots(vm);
      const pend = this.pendingOf(rec.id);
      const present = slots.filter((s) => s.qomPath && !pend.has(s.index));
      const res: VcpuSetResult = { name: rec.name, id: rec.id, requested: n, vcpus: present.length, pending: [] };
      if (n > present.length && unplugTrap(rec, this.ts.deps.backend.caps.qemuVersion)) {
        throw new XenoError(
          'BAD_STATE',
          `vcpu-set ${rec.name}: QEMU ${this.ts.deps.backend.caps.qemuVersion} under TCG corrupts its memory when a vcpu is plugged ` +
            `after one was unplugged (fixed in QEMU 8.0), and this QEMU has unplugged one: vcpus can be added again after the next ` +
            `boot of the domain (it keeps ${present.length} vcpu${present.length === 1 ? '' : 's'})`,
        );
      }
      if (n > present.length) {
        // Re-plugging a vcpu whose unplug is still pending is not possible: QEMU holds the device.
        const absent = slots.filter((s) => !s.qomPath);
        const want = n - present.length;
        if (absent.length < want) {
          throw new XenoError('BAD_STATE', `vcpu-set ${rec.name}: vcpus ${[...pend.keys()].join(', ')} are still being unplugged by the guest; try again once they are gone`);
        }
        if (rec.accel === 'tcg') await this.refuseFullTcgBuffer(rec, vm, present.length, want);
        const added: number[] = [];
        for (const s of absent.slice(0, want)) {
          try {
            await vm.command('device_add', { driver: s.type, id: `vcpu${s.index}`, ...s.props });
          } catch (e) {
            await this.refreshVcpus(rec, vm);
            throw new XenoError('QEMU_ERROR', `vcpu-set ${rec.name}: adding vcpu ${s.index} failed: ${errorMessage(e)}`);
          }
          added.push(s.index);
          crashPoint('vcpu-set:plugged');
        }
        const threads = await vm.vcpuThreads();
        await this.hooks.applyPins(rec, threads.filter((t) => added.includes(t.index)));
        res.vcpus = await this.refreshVcpus(rec, vm);
        this.ts.event(rec, 'vcpu-set', `${rec.name}: vcpus ${added.join(', ')} added; ${res.vcpus} vcpus`);
      } else if (n < present.length) {
        const victims = present.filter((s) => s.index !== 0).sort((a, b) => b.index - a.index).slice(0, present.length - n);
        const deadline = Date.now() + (opts.timeoutMs ?? this.unplugTimeoutMs);
        const removed: number[] = [];
        for (const s of victims) {
          const path = s.qomPath!;
          const wait = this.waitDeleted(vm, path, Math.max(0, deadline - Date.now()));
          pend.set(s.index, path);
          // Recorded before the unplug: a xenod dying right after it must still refuse a re-plug.
          if (rec.extra[UNPLUGGED_KEY] !== rec.pid) this.save(rec, rec.config, { ...rec.extra, [UNPLUGGED_KEY]: rec.pid });
          try {
            await vm.command('device_del', { id: path });
          } catch (e) {
            wait.cancel();
            pend.delete(s.index);
            await this.refreshVcpus(rec, vm);
            throw new XenoError('QEMU_ERROR', `vcpu-set ${rec.name}: removing vcpu ${s.index} failed: ${errorMessage(e)}`);
          }
          crashPoint('vcpu-set:unplug-sent');
          // The event, then QEMU's own list as the proof; also the proof when an event was missed.
          const signalled = await unlessAborted(wait.done, signal);
          if (signalled === 'aborted') {
            // destroy preempts the wait: the vcpu goes with the domain.
            wait.cancel();
            pend.delete(s.index);
            if (!pend.size) this.pending.delete(rec.id);
            throw signal.reason;
          }
          if (await this.vcpuGone(vm, path, signalled ? 5000 : 0)) {
            pend.delete(s.index);
            removed.push(s.index);
          } else {
            this.watchLateUnplug(rec, vm, s.index, path);
          }
        }
        res.vcpus = await this.refreshVcpus(rec, vm);
        res.pending = [...pend.keys()].sort((a, b) => a - b);
        if (res.pending.length) {
          res.message =
            `${rec.name} has not released vcpu${res.pending.length > 1 ? 's' : ''} ${res.pending.join(', ')} yet ` +
            `(no DEVICE_DELETED within ${((opts.timeoutMs ?? this.unplugTimeoutMs) / 1000).toFixed(0)} s): the unplug stays pending ` +
            `and completes when the guest lets go; vcpu-list shows it as pending`;
        }
        this.ts.event(rec, 'vcpu-set', `${rec.name}: vcpus ${removed.join(', ') || 'none'} removed${res.pending.length ? `, ${res.pending.join(', ')} pending` : ''}; ${res.vcpus} vcpus`);
      }
      if (!pend.size) this.pending.delete(rec.id);
      await this.syncGuest(rec, res);
      return res;
    }));
  }

  /** The guest agent onlines what was plugged, so the guest, `xeno list` and vcpu-list agree. */
  private async syncGuest(rec: DomainRecord, res: VcpuSetResult): Promise<void> {
    try {
      const online = await syncGuestVcpus(this.ts.guestAgent(rec), res.vcpus);
      if (online !== null) res.guestOnline = online;
    } catch (e) {
      res.message = [res.message, errorMessage(e)].filter(Boolean).join('; ');
    }
  }

  /** `xm vcpu-pin DOM VCPU|all CPUS`: the real affinity of the vcpu threads, kept in the config. */
  async vcpuPin(dom: string, vcpu: unknown, cpus: unknown): Promise<VcpuListRow[]> {
    if (typeof cpus !== 'string' && typeof cpus !== 'number') throw badRequest('vcpu-pin: a CPU list is required (all, 0-1, 0,2, ^1...)');
    const all = String(vcpu).trim() === 'all';
    const index = all ? -1 : parseCount(vcpu, 'vcpu-pin: the vcpu');
    const nr = this.hooks.nrCpus;
    let list: number[];
    try {
      list = parseCpuList(String(cpus), nr);
    } catch (e) {
      throw badRequest(`vcpu-pin: ${errorMessage(e)}`);
    }
    const text = formatCpuList(list, nr) === 'any cpu' ? undefined : formatCpuList(list, 0);
    await this.ts.withDomain(dom, 'vcpu-pin', async (rec) => {
      const vm = this.vmOf(rec);
      const threads = await vm.vcpuThreads();
      const targets = all ? threads : threads.filter((t) => t.index === index);
      if (!all && !targets.length) {
        const have = threads.map((t) => t.index).sort((a, b) => a - b);
        throw badRequest(`vcpu-pin ${rec.name}: vcpu ${index} does not exist (it has ${have.length} vcpu${have.length === 1 ? '' : 's'}: ${formatCpuList(have, 0)})`);
      }
      for (const t of targets) await setThreadAffinity(t.threadId, list);
      const pins = vcpuPinsOf(rec);
      let config = rec.config;
      if (all) {
        config = { ...config };
        if (text === undefined) delete config.cpus;
        else config.cpus = text;
        for (const k of Object.keys(pins)) delete pins[k];
      } else if (text === config.cpus || (text === undefined && config.cpus === undefined)) {
        delete pins[String(index)];
      } else {
        pins[String(index)] = text ?? 'all';
      }
      this.save(rec, config, { ...rec.extra, [VCPU_PINS_KEY]: pins });
      this.ts.event(rec, 'vcpu-pin', `${rec.name}: vcpu ${all ? 'all' : index} pinned to ${text ?? 'any cpu'}`);
    });
    return this.vcpuList(dom);
  }

  /** `xm vcpu-list [DOM]`: from the real vcpu threads (QMP thread ids + /proc). */
  async vcpuList(dom?: string): Promise<VcpuListRow[]> {
    const nr = this.hooks.nrCpus;
    const rows: VcpuListRow[] = [];
    if (dom === undefined || dom === '0' || dom === 'Domain-0') {
      os.cpus().forEach((cpu, i) => {
        const t = cpu.times;
        rows.push({
          name: 'Domain-0', id: 0, vcpu: i, cpu: i, state: 'r--', time: Math.round((t.user + t.nice + t.sys + t.irq) / 100) / 10,
          affinity: 'any cpu', cpus: Array.from({ length: nr }, (_, k) => k),
        });
      });
      if (dom !== undefined) return rows;
    }
    const recs = dom === undefined ? this.ts.deps.store.all() : [this.ts.resolve(dom)];
    for (const rec of recs) {
      let live;
      try {
        live = this.ts.liveOf(rec);
      } catch {
        continue;
      }
      if (live.vm.exited || !rec.pid) continue;
      let threads;
      try {
        threads = await live.vm.vcpuThreads();
      } catch (e) {
        if (dom !== undefined) throw new XenoError('QEMU_ERROR', `vcpu-list ${rec.name}: ${errorMessage(e)}`);
        continue;
      }
      const paused = rec.state !== 'running' && rec.state !== 'starting';
      const expected = Array.from({ length: rec.config.maxvcpus }, (_, i) => i);
      const pend = this.pending.get(rec.id);
      const pins = vcpuPinsOf(rec);
      for (const r of vcpuRows(rec.name, rec.id, rec.pid, threads, nr, { paused, expected })) {
        const { threadId, ...row } = r;
        const out: VcpuListRow = row;
        if (threadId === undefined) {
          // offline: show the pinning it will get when plugged
          const pin = pinFor(rec.config, pins, r.vcpu);
          if (pin !== undefined) {
            try {
              out.cpus = parseCpuList(pin, nr);
              out.affinity = formatCpuList(out.cpus, nr);
            } catch {
              /* a pin naming CPUs this host lacks: leave "any" */
            }
          }
        }
        if (pend?.has(r.vcpu)) out.pending = true;
        rows.push(out);
      }
    }
    return rows;
  }

  // ---- credit scheduler -------------------------------------------------------------------

  private schedRow(rec: DomainRecord): SchedCreditRow {
    return { name: rec.name, id: rec.id, weight: rec.config.cpuWeight ?? DEFAULT_WEIGHT, cap: rec.config.cap ?? 0 };
  }

  /** `xm sched-credit [-d DOM]`: weight and cap of each domain (Domain-0 first). */
  schedCredit(dom?: string): SchedCreditRow[] {
    const dom0: SchedCreditRow = { name: 'Domain-0', id: 0, weight: DEFAULT_WEIGHT, cap: 0 };
    if (dom === '0' || dom === 'Domain-0') return [dom0];
    if (dom !== undefined) return [this.schedRow(this.ts.resolve(dom))];
    return [dom0, ...this.ts.deps.store.all().map((r) => this.schedRow(r))];
  }

  /** `xm sched-credit -d DOM -w WEIGHT -c CAP`: applied on the domain's cgroup, kept in its config. */
  async setSchedCredit(dom: string, p: { weight?: unknown; cap?: unknown }): Promise<SchedCreditRow> {
    const weight = p.weight === undefined || p.weight === null ? undefined : parseCount(p.weight, 'sched-credit: the weight');
    const cap = p.cap === undefined || p.cap === null ? undefined : parseCount(p.cap, 'sched-credit: the cap');
    if (weight === undefined && cap === undefined) throw badRequest('sched-credit: give a weight (-w) and/or a cap (-c)');
    if (weight !== undefined && (weight < 1 || weight > MAX_WEIGHT)) {
      throw badRequest(`sched-credit: weight ${weight} is out of range (1 to ${MAX_WEIGHT}; the default is ${DEFAULT_WEIGHT})`);
    }
    return this.ts.withDomain(dom, 'sched', async (rec) => {
      if (cap !== undefined && cap > 100 * rec.config.maxvcpus) {
        throw badRequest(`sched-credit ${rec.name}: cap ${cap} is out of range (0 = none, up to 100 per vcpu: ${100 * rec.config.maxvcpus})`);
      }
      const cg = this.hooks.requireCgroups();
      const group = this.hooks.groupName(rec);
      const vm = this.vmOf(rec);
      if (!cg.exists(group)) {
        // e.g. a QEMU adopted from a daemon that ran without cgroups
        cg.create(group);
        await cg.addPid(group, vm.pid);
      }
      if (weight !== undefined) cg.setWeight(group, weight);
      if (cap !== undefined) cg.setCap(group, cap);
      const config = { ...rec.config };
      if (weight !== undefined) config.cpuWeight = weight;
      if (cap !== undefined) config.cap = cap;
      this.save(rec, config);
      this.ts.event(rec, 'sched-credit', `${rec.name}: weight ${config.cpuWeight ?? DEFAULT_WEIGHT}, cap ${config.cap ?? 0}`);
      return this.schedRow(rec);
    });
  }
}

function fmtMb(v: number | null): string {
  return v === null ? 'an unknown amount (no balloon answer)' : `${Math.round(v)} MiB`;
}
