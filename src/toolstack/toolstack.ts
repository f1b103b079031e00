/**
 * One host's orchestration: creates, adopts, stops and destroys domains on the hypervisor backend,
 * keeps their state in the store, and answers what the guests do (on_poweroff, on_reboot, on_crash).
 * Every operation on a domain runs under that domain's lock; host changes made by a failing
 * operation are undone before the error is reported.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import { XenoError } from '../common/errors.js';
import { XENO_VERSION } from '../common/version.js';
import type { HypervisorBackend, GuestStopReason, Vm } from '../hypervisor/backend.js';
import { GuestAgent, guestAddresses } from '../hypervisor/qemu/guest-agent.js';
import { qemuPaths } from '../hypervisor/qemu/qemu-backend.js';
import { account, ensureFits, hostTotalMemoryMb, type MemoryAccount } from '../host/memory.js';
import { threadStat } from '../host/proc.js';
import type { DomainDetail, DomainInfo, GuestAgentInfo, HostInfo } from '../model/api.js';
import type { DaemonConfig } from '../model/daemon-config.js';
import { validateMachineType } from '../config/validate.js';
import type { DomainConfig, LifecycleAction } from '../model/domain-config.js';
import { isLegal, stateFlags, type DomainOp } from '../model/domain-state.js';
import { validateForDaemon } from './config-guard.js';
import { ConsoleHub } from './console-hub.js';
import { KeyedLock } from './locks.js';
import type { DomainRecord, StateStore } from './store.js';
import { NO_HOOKS, type DomainHooks } from './hooks.js';

export interface ToolstackDeps {
  config: DaemonConfig;
  backend: HypervisorBackend & { overheadMb: number };
  store: StateStore;
  log: Logger;
  hooks?: DomainHooks;
}

interface Live {
  vm: Vm;
  console: ConsoleHub;
  vcpuTids: number[];
  /** Set while xenod itself is stopping this QEMU, so its exit is not taken for a crash. */
  stopping: boolean;
}

export class Toolstack {
  private readonly live = new Map<number, Live>();
  private readonly locks = new KeyedLock();
  readonly hooks: DomainHooks;
  /** Outgoing migrations by domain id (src/migration/client.ts): destroy aborts one first. */
  readonly migrationAborts = new Map<number, AbortController>();

  constructor(readonly deps: ToolstackDeps) {
    this.hooks = deps.hooks ?? NO_HOOKS;
  }

  private get store(): StateStore {
    return this.deps.store;
  }
  private get log(): Logger {
    return this.deps.log;
  }

  runDirFor(domid: number): string {
    return path.join(this.deps.config.stateDir, 'run', String(domid));
  }

  private consoleLogFor(name: string): string {
    return path.join(this.deps.config.stateDir, 'console', `${name}.log`);
  }

  event(d: { id: number; name: string } | null, kind: string, message: string): void {
    this.store.addEvent(d?.id ?? null, d?.name ?? null, kind, message);
    this.log.info({ domid: d?.id, domain: d?.name, kind }, message);
  }

  // ---- lookup -------------------------------------------------------------------------------

  /** A DOM argument: a name or a numeric id. */
  resolve(dom: string): DomainRecord {
    const rec = /^\d+$/.test(dom) ? this.store.get(Number(dom)) : this.store.byName(dom);
    if (!rec) {
      if (dom === '0' || dom === 'Domain-0') throw new XenoError('BAD_REQUEST', 'Domain-0 is the host itself: this operation applies to guests');
      throw new XenoError('NO_SUCH_DOMAIN', `domain '${dom}' does not exist`);
    }
    return rec;
  }

  /** performance.now() when the domain's current QEMU was spawned. */
  spawnedAt(id: number): number | undefined {
    return this.live.get(id)?.vm.spawnedAt;
  }

  liveOf(rec: DomainRecord): Live {
    const l = this.live.get(rec.id);
    if (!l) throw new XenoError('BAD_STATE', `domain ${rec.name} has no running QEMU`);
    return l;
  }

  /** Run `fn` under the domain's lock after checking `op` is legal in its current state. */
  async withDomain<T>(dom: string, op: DomainOp, fn: (rec: DomainRecord) => Promise<T>): Promise<T> {
    const first = this.resolve(dom);
    return this.locks.run(first.id, async () => {
      const rec = this.store.get(first.id);
      if (!rec) throw new XenoError('NO_SUCH_DOMAIN', `domain '${dom}' does not exist`);
      if (!isLegal(rec.state, op)) throw new XenoError('BAD_STATE', `cannot ${op} domain ${rec.name}: it is ${rec.state}`);
      return fn(rec);
    });
  }

  // ---- memory -------------------------------------------------------------------------------

  /**
   * Everything that takes host memory (create, restore, incoming migration, mem-max) runs under this
   * one lock, so two requests can never both fit in the same free memory.
   */
  withHostMemory<T>(fn: () => Promise<T>): Promise<T> {
    return this.locks.run('host-memory', fn);
  }

  chargeOf(c: DomainConfig): number {
    return c.maxmem + this.deps.backend.overheadMb;
  }

  memoryAccount(excludeId?: number): MemoryAccount {
    const charges = this.store
      .all()
      .filter((d) => d.id !== excludeId)
      .map((d) => ({ name: d.name, mb: this.chargeOf(d.config) }));
    return account(hostTotalMemoryMb(), this.deps.config.dom0MinMem, charges);
  }

  // ---- info ---------------------------------------------------------------------------------

  hostInfo(): HostInfo {
    const acc = this.memoryAccount();
    const caps = this.deps.backend.caps;
    return {
      host: os.hostname(),
      release: os.release(),
      machine: os.machine(),
      nr_cpus: os.cpus().length,
      total_memory: acc.total,
      free_memory: acc.free,
      dom0_min_mem: acc.dom0MinMem,
      accel: caps.accel,
      accel_reason: caps.accelReason,
      qemu_version: caps.qemuVersion,
      machine_type: caps.machineType,
      xeno_version: XENO_VERSION,
      state_dir: this.deps.config.stateDir,
      network_mode: this.deps.config.networkScript,
    };
  }

  domain0(): DomainInfo {
    const acc = this.memoryAccount();
    const cpus = os.cpus();
    const cpuTime = cpus.reduce((s, c) => s + (c.times.user + c.times.sys + c.times.nice + c.times.irq) / 1000, 0);
    return {
      id: 0, name: 'Domain-0', uuid: '00000000-0000-0000-0000-000000000000', state: 'running', stateFlags: 'r-----',
      memory: acc.dom0, maxmem: acc.total, vcpus: cpus.length, maxvcpus: cpus.length, cpuTime: round1(cpuTime),
      uptime: Math.round(os.uptime()), startTime: Date.now() / 1000 - os.uptime(),
    };
  }

  info(rec: DomainRecord): DomainInfo {
    const l = this.live.get(rec.id);
    let cpuTime = 0;
    let executing = false;
    if (l && rec.pid) {
      for (const tid of l.vcpuTids) {
        const s = threadStat(rec.pid, tid);
        if (!s) continue;
        cpuTime += s.cpuTime;
        if (s.state === 'R') executing = true;
      }
    }
    return {
      id: rec.id,
      name: rec.name,
      uuid: rec.uuid,
      state: rec.state,
      stateFlags: stateFlags(rec.state, executing),
      memory: rec.config.memory,
      maxmem: rec.config.maxmem,
      vcpus: l ? l.vcpuTids.length : rec.config.vcpus,
      maxvcpus: rec.config.maxvcpus,
      cpuTime: round1(cpuTime),
      pid: rec.pid ?? undefined,
      uptime: Math.max(0, Math.round(Date.now() / 1000 - rec.startTime)),
      startTime: rec.startTime,
      machineType: rec.machineType,
      accel: rec.accel,
    };
  }

  async detail(rec: DomainRecord): Promise<DomainDetail> {
    const base = this.info(rec);
    let balloonActual: number | undefined;
    const l = this.live.get(rec.id);
    if (l && !l.vm.exited) {
      try {
        const b = await l.vm.command<{ actual: number }>('query-balloon', undefined, 2000);
        balloonActual = Math.round(b.actual / 1048576);
      } catch {
        /* no balloon answer: leave it out */
      }
    }
    const guest = l && !l.vm.exited ? await this.guestAgentInfo(rec) : undefined;
    return { ...base, config: rec.config, balloonActual, ...(guest ? { guest } : {}) };
  }

  /** The guest agent's view, or undefined when the guest runs none (or is paused). */
  private async guestAgentInfo(rec: DomainRecord): Promise<GuestAgentInfo | undefined> {
    if (rec.state !== 'running') return undefined;
    const qga = this.guestAgent(rec);
    try {
      const ifaces = await qga.interfaces(2000);
      const os = await qga.osInfo(2000).catch(() => undefined);
      return { addresses: guestAddresses(ifaces), os: os?.['pretty-name'] ?? os?.name, kernel: os?.['kernel-release'] };
    } catch {
      return undefined;
    }
  }

  guestAgent(rec: DomainRecord): GuestAgent {
    return new GuestAgent(qemuPaths(rec.runDir).qga);
  }

  list(): DomainInfo[] {
    return [this.domain0(), ...this.store.all().map((r) => this.info(r))];
  }

  console(dom: string): ConsoleHub {
    const rec = this.resolve(dom);
    return this.liveOf(rec).console;
  }

  // ---- create -------------------------------------------------------------------------------

  /**
   * The one config validator (config/validate.ts, with this daemon's floor and protected paths,
   * plus the filesystem checks of config-guard.ts): every door calls it. Returns the config
   * normalised; throws a 4xx naming the field.
   */
  validateConfig(raw: unknown): DomainConfig {
    return validateForDaemon(raw, this.deps.config);
  }

  /** A runtime change (mem-set, vcpu-set, network-attach...) validated as a whole new config. */
  validateChange(rec: DomainRecord, next: DomainConfig, op: string): DomainConfig {
    try {
      return this.validateConfig(next);
    } catch (e) {
      if (e instanceof XenoError) throw new XenoError(e.code, `${op} ${rec.name}: ${e.message}`, e.details);
      throw e;
    }
  }

  /** Checks that leave nothing behind when they fail; returns the validated config. */
  validateForCreate(raw: unknown, excludeId?: number): DomainConfig {
    const c = this.validateConfig(raw);
    const existing = this.store.byName(c.name);
    if (existing && existing.id !== excludeId) throw new XenoError('DOMAIN_EXISTS', `a domain named '${c.name}' already exists (id ${existing.id})`);
    for (const [what, file] of [['kernel', c.kernel], ['ramdisk', c.ramdisk]] as const) {
      if (file && !existsSync(file)) throw new XenoError('NO_SUCH_FILE', `${what} file ${file} does not exist`);
    }
    for (const d of c.disks) {
      if (d.target && !existsSync(d.target)) throw new XenoError('NO_SUCH_FILE', `disk ${d.vdev}: ${d.target} does not exist`);
    }
    ensureFits(this.memoryAccount(excludeId), this.chargeOf(c), `create ${c.name}`);
    return c;
  }

  async create(raw: DomainConfig, opts: { paused?: boolean; incoming?: boolean; state?: DomainRecord['state']; machineType?: string } = {}): Promise<DomainRecord> {
    return this.withHostMemory(async () => {
      const c = this.validateForCreate(raw);
      if (opts.machineType !== undefined) validateMachineType(opts.machineType);
      const id = this.store.allocateDomid();
      const rec: DomainRecord = {
        id, name: c.name, uuid: c.uuid ?? randomUUID(), config: c, state: 'starting', pid: null,
        machineType: opts.machineType ?? this.deps.backend.caps.machineType, accel: this.deps.backend.caps.accel,
        startTime: Date.now() / 1000, runDir: this.runDirFor(id), extra: {},
      };
      this.store.insert(rec);
      try {
        await this.locks.run(id, () => this.boot(rec, opts));
      } catch (e) {
        await this.teardown(rec).catch(() => undefined);
        this.store.remove(id);
        throw e;
      }
      this.event(rec, 'create', `created ${rec.name} as domain ${id} (${rec.accel}, ${rec.machineType})`);
      return this.store.get(id)!;
    });
  }

  /** Start QEMU for a record (create, restart). */
  private async boot(rec: DomainRecord, opts: { paused?: boolean; incoming?: boolean; state?: DomainRecord['state'] }): Promise<void> {
    const c = rec.config;
    mkdirSync(rec.runDir, { recursive: true, mode: 0o700 });
    mkdirSync(path.dirname(this.consoleLogFor(rec.name)), { recursive: true });
    const prepared = await this.hooks.beforeLaunch(rec);
    const vm = await this.deps.backend.launch({
      domid: rec.id, uuid: rec.uuid, config: prepared.config ?? c, runDir: rec.runDir, machineType: rec.machineType,
      nics: prepared.nics, startPaused: opts.paused, incoming: opts.incoming, logFile: path.join(rec.runDir, 'qemu.log'),
    });
    rec.pid = vm.pid;
    this.store.update(rec.id, { pid: vm.pid, runDir: rec.runDir, startTime: Date.now() / 1000 });
    const live = this.attach(rec, vm);
    if (c.memory < c.maxmem) await vm.command('balloon', { value: c.memory * 1048576 });
    await this.hooks.afterLaunch(rec, vm);
    live.vcpuTids = (await vm.vcpuThreads()).map((t) => t.threadId);
    const state = opts.state ?? (opts.paused || opts.incoming ? 'paused' : 'running');
    rec.state = state;
    this.store.update(rec.id, { state });
  }

  private attach(rec: DomainRecord, vm: Vm): Live {
    const console = new ConsoleHub(qemuPaths(rec.runDir).serial, this.consoleLogFor(rec.name), this.deps.config.consoleLimitKb * 1024);
    const live: Live = { vm, console, vcpuTids: [], stopping: false };
    this.live.set(rec.id, live);
    vm.on('guest-stop', (reason: GuestStopReason) => this.background(rec, this.onGuestStop(rec.id, live, reason)));
    vm.on('exit', () => this.background(rec, this.onQemuExit(rec.id, live)));
    return live;
  }

  // ---- what the guest did -------------------------------------------------------------------

  /** Work started by an event, not a request: its failure is logged, never thrown into the void. */
  private background(rec: DomainRecord, work: Promise<void>): void {
    work.catch((e: unknown) => this.event(rec, 'error', `${rec.name}: ${e instanceof Error ? e.message : String(e)}`));
  }

  private actionFor(c: DomainConfig, reason: GuestStopReason): LifecycleAction {
    return reason === 'poweroff' ? c.onPoweroff : reason === 'reboot' ? c.onReboot : c.onCrash;
  }

  private async onGuestStop(id: number, live: Live, reason0: GuestStopReason): Promise<void> {
    if (live.stopping) return;
    await this.locks.run(id, async () => {
      const rec = this.store.get(id);
      if (!rec || this.live.get(id) !== live || live.stopping) return;
      // A reboot asked through xenod is an ACPI shutdown the guest performs, then a restart.
      const reason: GuestStopReason = reason0 === 'poweroff' && rec.extra.rebootRequested ? 'reboot' : reason0;
      if (rec.extra.rebootRequested) this.store.update(id, { extra: { ...rec.extra, rebootRequested: false } });
      const action = this.actionFor(rec.config, reason);
      this.event(rec, reason, `guest ${reason === 'poweroff' ? 'powered off' : reason === 'reboot' ? 'rebooted' : 'crashed'}: on_${reason === 'crash' ? 'crash' : reason === 'reboot' ? 'reboot' : 'poweroff'}=${action}`);
      switch (action) {
        case 'destroy':
        case 'coredump-destroy':
          await this.destroyLocked(rec);
          return;
        case 'restart':
        case 'rename-restart':
        case 'coredump-restart':
          await this.restartLocked(rec);
          return;
        case 'preserve':
          this.store.update(id, { state: reason === 'crash' ? 'crashed' : 'shutdown' });
          return;
      }
    });
  }

  private async onQemuExit(id: number, live: Live): Promise<void> {
    if (live.stopping) return;
    await this.locks.run(id, async () => {
      const rec = this.store.get(id);
      if (!rec || this.live.get(id) !== live || live.stopping) return;
      this.event(rec, 'exit', `QEMU (pid ${rec.pid}) exited unexpectedly; domain ${rec.name} removed`);
      await this.teardown(rec);
      this.store.remove(id);
    });
  }

  // ---- stop ---------------------------------------------------------------------------------

  /** Undo everything a domain holds on the host (QEMU, console, hooks' resources, run dir). */
  private async teardown(rec: DomainRecord): Promise<void> {
    const live = this.live.get(rec.id);
    if (live) {
      live.stopping = true;
      await live.vm.kill();
      live.console.close();
      this.live.delete(rec.id);
    }
    await this.hooks.afterStop(rec);
    rmSync(rec.runDir, { recursive: true, force: true });
  }

  /**
   * Restart as Xen does: the old QEMU goes, a fresh one boots from the stored config (so changes
   * made since, such as maxmem, take effect). An in-place reset is avoided on purpose: after a
   * reset from the shutdown state the firmware resets once more, which reads as a second reboot.
   */
  private async restartLocked(rec: DomainRecord): Promise<void> {
    await this.teardown(rec);
    const fresh = this.store.get(rec.id)!;
    this.store.update(rec.id, { state: 'starting', pid: null });
    try {
      await this.boot({ ...fresh, state: 'starting' }, {});
    } catch (e) {
      this.store.remove(rec.id);
      throw e;
    }
    this.event(rec, 'restart', `${rec.name} restarted (QEMU pid ${this.store.get(rec.id)?.pid})`);
  }

  /**
   * Remove a domain whose state now lives elsewhere (saved to a file): QEMU quits and everything it
   * held is freed, without counting as a destroy. Call under the domain's lock.
   */
  async releaseLocked(rec: DomainRecord, kind: string, message: string): Promise<void> {
    await this.teardown(rec);
    this.store.remove(rec.id);
    this.event(rec, kind, message);
  }

  private async destroyLocked(rec: DomainRecord): Promise<void> {
    this.store.update(rec.id, { state: 'dying' });
    await this.teardown(rec);
    this.store.remove(rec.id);
    this.event(rec, 'destroy', `domain ${rec.name} (${rec.id}) destroyed`);
  }

  destroy(dom: string): Promise<void> {
    // A migration holds the domain's lock: preempt it, so the destroy does not wait for it.
    this.migrationAborts.get(this.resolve(dom).id)?.abort();
    return this.withDomain(dom, 'destroy', (rec) => this.destroyLocked(rec));
  }

  /** ACPI power button; with wait, returns once the domain is gone (or preserved). */
  async shutdown(dom: string, wait: boolean, timeoutMs = 120_000): Promise<void> {
    const rec = await this.withDomain(dom, 'shutdown', async (r) => {
      const l = this.liveOf(r);
      if (r.state === 'paused') await l.vm.resume();
      await l.vm.powerdown();
      this.event(r, 'shutdown', `shutdown requested for ${r.name}`);
      this.agentShutdownFallback(r, l);
      return r;
    });
    if (wait) await this.waitGone(rec.id, timeoutMs);
  }

  /**
   * A guest that ignores the ACPI power button (no acpid, a button handler masked) is asked again
   * through its agent (guest-shutdown) after a while, if it runs one.
   */
  private agentShutdownFallback(rec: DomainRecord, live: Live, afterMs = 30_000): void {
    const t = setTimeout(() => {
      if (live.vm.exited || live.stopping || this.live.get(rec.id) !== live) return;
      void this.guestAgent(rec).shutdown().then(
        () => this.event(rec, 'shutdown', `${rec.name} ignored the ACPI power button: asked through its guest agent`),
        () => undefined,
      );
    }, afterMs);
    t.unref();
  }

  /** A clean reboot: the guest shuts down through ACPI, and xenod restarts it (on_reboot). */
  async reboot(dom: string): Promise<void> {
    await this.withDomain(dom, 'reboot', async (rec) => {
      const l = this.liveOf(rec);
      if (rec.state === 'shutdown' || rec.state === 'crashed') {
        await this.restartLocked(rec);
        return;
      }
      this.store.update(rec.id, { extra: { ...rec.extra, rebootRequested: true } });
      await l.vm.powerdown();
      this.event(rec, 'reboot', `reboot requested for ${rec.name}`);
      this.agentShutdownFallback(rec, l);
    });
  }

  async waitGone(id: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = this.store.get(id);
      if (!r || r.state === 'shutdown' || r.state === 'crashed') return;
      if (Date.now() > deadline) throw new XenoError('TIMEOUT', `domain ${r.name} did not shut down within ${timeoutMs / 1000} s`);
      await new Promise((res) => setTimeout(res, 50));
    }
  }

  async pause(dom: string): Promise<void> {
    await this.withDomain(dom, 'pause', async (rec) => {
      await this.liveOf(rec).vm.pause();
      this.store.update(rec.id, { state: 'paused' });
      this.event(rec, 'pause', `${rec.name} paused`);
    });
  }

  async unpause(dom: string): Promise<void> {
    await this.withDomain(dom, 'unpause', async (rec) => {
      await this.liveOf(rec).vm.resume();
      this.store.update(rec.id, { state: 'running' });
      this.event(rec, 'unpause', `${rec.name} unpaused`);
    });
  }

  // ---- daemon start / stop ------------------------------------------------------------------

  /** Re-adopt every QEMU an earlier xenod left running; forget the ones that are gone. */
  async adoptAll(): Promise<void> {
    for (const rec of this.store.all()) {
      const vm = rec.pid ? await this.deps.backend.adopt(rec.pid, rec.runDir) : null;
      if (!vm) {
        this.event(rec, 'lost', `domain ${rec.name} (${rec.id}): QEMU pid ${rec.pid} is gone; removed`);
        await this.hooks.afterStop(rec).catch(() => undefined);
        rmSync(rec.runDir, { recursive: true, force: true });
        this.store.remove(rec.id);
        continue;
      }
      const live = this.attach(rec, vm);
      live.vcpuTids = (await vm.vcpuThreads()).map((t) => t.threadId);
      await this.hooks.afterAdopt(rec, vm);
      const run = await vm.runState();
      this.event(rec, 'adopt', `re-adopted ${rec.name} (${rec.id}), QEMU pid ${rec.pid}, ${run}`);
      // The guest stopped while no daemon was watching: answer it now.
      if (run === 'panicked' && rec.state !== 'crashed') this.background(rec, this.onGuestStop(rec.id, live, 'crash'));
      else if (run === 'shutdown' && rec.state !== 'shutdown') this.background(rec, this.onGuestStop(rec.id, live, 'poweroff'));
      else if (run === 'running' && rec.state === 'paused') this.store.update(rec.id, { state: 'running' });
      else if (run === 'paused' && rec.state === 'running') this.store.update(rec.id, { state: 'paused' });
    }
  }

  /** Leave every guest running: drop our connections only. */
  detachAll(): void {
    for (const l of this.live.values()) {
      l.stopping = true;
      l.console.close();
      l.vm.detach();
    }
    this.live.clear();
  }
}

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}
