/**
 * One host's orchestration: creates, adopts, stops and destroys domains on the hypervisor backend,
 * keeps their state in the store, and answers what the guests do (on_poweroff, on_reboot, on_crash).
 * Every operation on a domain runs under that domain's lock; host changes made by a failing
 * operation are undone before the error is reported.
 */
import { randomUUID } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { EventEmitter } from 'node:events';
import path from 'node:path';
import type { Logger } from 'pino';
import { XenoError } from '../common/errors.js';
import { crashPoint } from '../common/test-crash.js';
import type { HypervisorBackend, GuestStopReason, VcpuThread, Vm } from '../hypervisor/backend.js';
import { guestCmdline } from '../hypervisor/qemu/argv.js';
import { GuestAgent } from '../hypervisor/qemu/guest-agent.js';
import { qemuPaths } from '../hypervisor/qemu/qemu-backend.js';
import { account, ensureFits, hostTotalMemoryMb, type MemoryAccount } from '../host/memory.js';
import type { DomainDetail, DomainInfo, HostInfo } from '../model/api.js';
import type { DaemonConfig } from '../model/daemon-config.js';
import { validateMachineType } from '../config/validate.js';
import type { DomainConfig, LifecycleAction } from '../model/domain-config.js';
import { isLegal, type DomainOp } from '../model/domain-state.js';
import { checkDiskImages, validateForDaemon } from './config-guard.js';
import { keepQemuLog, qemuLogFor, qemuLogTail, runQemuLog, setUpVnc } from './qemu-log.js';
import { ConsoleHub, consoleOfCmdline } from './console-hub.js';
import { dumpGuestMemory } from './coredump.js';
import { incarnationName } from './incarnation.js';
import { KeyedLock } from './locks.js';
import { LongOperations } from './long-ops.js';
import type { DomainRecord, StateStore } from './store.js';
import { NO_HOOKS, type DomainHooks } from './hooks.js';
import { Adoption } from './adopt.js';
import { RestartScheduler, historyOf } from './restart-policy.js';
import { domain0Info, domainDetail, domainInfo, hostInfo } from './domain-info.js';

export interface ToolstackDeps {
  config: DaemonConfig;
  backend: HypervisorBackend & { overheadMbFor(c: { maxvcpus: number }): number };
  store: StateStore;
  log: Logger;
  hooks?: DomainHooks;
}

/** How a QEMU is started: create -p, a restore or incoming migration (waits for its state). */
export interface BootOptions {
  paused?: boolean;
  incoming?: boolean;
  /** With incoming: the open save file QEMU reads its state from (see LaunchRequest.incomingFd). */
  incomingFd?: number;
  state?: DomainRecord['state'];
}

export interface Live {
  vm: Vm;
  console: ConsoleHub;
  vcpuTids: number[];
  /** Set while xenod itself is stopping this QEMU, so its exit is not taken for a crash. */
  stopping: boolean;
}

export class Toolstack {
  private readonly live = new Map<number, Live>();
  private readonly locks = new KeyedLock();
  private readonly longOps = new LongOperations();
  readonly hooks: DomainHooks;
  /** Re-adoption at start-up, and QEMUs that did not answer it (retried in the background). */
  readonly adoption: Adoption;
  /** on_reboot/on_crash restarts, with back-off and the restart limit. */
  readonly restarts: RestartScheduler;
  /** Every lifecycle event as it is recorded (the web console's live feed). */
  readonly eventFeed = new EventEmitter();

  constructor(readonly deps: ToolstackDeps) {
    this.hooks = deps.hooks ?? NO_HOOKS;
    this.adoption = new Adoption(this);
    this.restarts = new RestartScheduler(this);
  }

  get store(): StateStore {
    return this.deps.store;
  }
  get log(): Logger {
    return this.deps.log;
  }

  runDirFor(domid: number): string {
    return path.join(this.deps.config.stateDir, 'run', String(domid));
  }

  consoleLogFor(name: string): string {
    return path.join(this.deps.config.stateDir, 'console', `${name}.log`);
  }

  event(d: { id: number; name: string } | null, kind: string, message: string, level: 'info' | 'warn' = 'info'): void {
    const wasFailing = this.store.eventsLost;
    if (!this.store.addEvent(d?.id ?? null, d?.name ?? null, kind, message) && !wasFailing) {
      this.log.warn('the state database cannot store events (disk full?): they go to xenod.log only until it can');
    }
    this.log[level]({ domid: d?.id, domain: d?.name, kind }, message);
    this.eventFeed.emit('event', { ts: Date.now() / 1000, domid: d?.id ?? null, name: d?.name ?? null, kind, message });
  }

  /** Run fn under a domain's lock (the one every operation on it takes). */
  runLocked<T>(id: number, fn: () => Promise<T>): Promise<T> {
    return this.locks.run(id, fn);
  }

  /** The domain's QEMU as attached now (undefined while it is not, e.g. not answering QMP). */
  liveById(id: number): Live | undefined {
    return this.live.get(id);
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
    if (!l) {
      const u = this.adoption.unanswered(rec.id);
      if (u) throw new XenoError('BAD_STATE', `domain ${rec.name}: its QEMU (pid ${u.pid}) does not answer QMP since xenod restarted (retried in the background); only destroy works meanwhile`);
      throw new XenoError('BAD_STATE', `domain ${rec.name} has no running QEMU`);
    }
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
    return c.maxmem + this.deps.backend.overheadMbFor(c);
  }

  memoryAccount(excludeId?: number, records: DomainRecord[] = this.store.all()): MemoryAccount {
    const charges = records
      .filter((d) => d.id !== excludeId)
      .map((d) => ({ name: d.name, mb: this.chargeOf(d.config) }));
    return account(hostTotalMemoryMb(), this.deps.config.dom0MinMem, charges);
  }

  // ---- info (domain-info.ts) ---------------------------------------------------------------

  hostInfo(): HostInfo {
    return hostInfo(this);
  }

  domain0(records?: DomainRecord[]): DomainInfo {
    return domain0Info(this, records);
  }

  info(rec: DomainRecord): DomainInfo {
    return domainInfo(this, rec);
  }

  detail(rec: DomainRecord): Promise<DomainDetail> {
    return domainDetail(this, rec);
  }

  guestAgent(rec: DomainRecord): GuestAgent {
    return new GuestAgent(qemuPaths(rec.runDir).qga);
  }

  list(): DomainInfo[] {
    const records = this.store.all();
    return [this.domain0(records), ...records.map((r) => this.info(r))];
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

  async create(raw: DomainConfig, opts: BootOptions & { machineType?: string } = {}): Promise<DomainRecord> {
    // The image probes depend on no other domain: before the lock, so that creates issued at once
    // probe side by side. The checks against the others (name, memory) are made again under it.
    const checked = this.validateForCreate(raw);
    if (opts.machineType !== undefined) validateMachineType(opts.machineType);
    await checkDiskImages(checked, this.deps.config);
    // Only the checks and the record are under the host-memory lock: the inserted record carries
    // the charge from then on, so QEMU's start (the long part) runs beside the other creates'.
    const rec = await this.withHostMemory(async () => {
      const c = this.validateForCreate(raw);
      const id = this.store.allocateDomid();
      const r: DomainRecord = {
        id, name: c.name, uuid: c.uuid ?? randomUUID(), config: c, state: 'starting', pid: null,
        machineType: opts.machineType ?? this.deps.backend.caps.machineType, accel: this.deps.backend.caps.accel,
        startTime: Date.now() / 1000, runDir: this.runDirFor(id), extra: {},
      };
      this.store.insert(r);
      return r;
    });
    crashPoint('create:recorded');
    try {
      await this.locks.run(rec.id, () => this.boot(rec, opts));
    } catch (e) {
      await this.teardown(rec).catch(() => undefined);
      this.store.remove(rec.id);
      throw e;
    }
    this.event(rec, 'create', `created ${rec.name} as domain ${rec.id} (${rec.accel}, ${rec.machineType})`);
    return this.store.get(rec.id)!;
  }

  /** Start QEMU for a record (create, restart). */
  private async boot(rec: DomainRecord, opts: BootOptions): Promise<void> {
    const c = rec.config;
    mkdirSync(rec.runDir, { recursive: true, mode: 0o700 });
    mkdirSync(path.dirname(this.consoleLogFor(rec.name)), { recursive: true });
    const prepared = await this.hooks.beforeLaunch(rec);
    crashPoint('boot:plugged');
    const logFile = runQemuLog(rec.runDir);
    const vm = await this.deps.backend.launch({
      domid: rec.id, uuid: rec.uuid, config: prepared.config ?? c, runDir: rec.runDir, machineType: rec.machineType,
      nics: prepared.nics, startPaused: opts.paused, incoming: opts.incoming, incomingFd: opts.incomingFd, logFile,
      // Recorded before QMP answers: a xenod dying now leaves a QEMU the next one can find.
      onSpawn: (pid) => {
        rec.pid = pid;
        this.hooks.onSpawn?.(rec, pid);
        this.store.update(rec.id, { pid, runDir: rec.runDir, startTime: Date.now() / 1000 });
        // Each run's output stays apart in the console log (the hub keeps the log bounded).
        const run = `----- xeno: ${rec.name} run ${historyOf(rec).total + 1} started ${new Date().toISOString()} (QEMU pid ${pid}) -----`;
        try {
          appendFileSync(this.consoleLogFor(rec.name), `\r\n${run}\r\n`);
        } catch {
          /* a full disk costs this line, never the start (the hub reports lost output) */
        }
        crashPoint('boot:spawned');
      },
    });
    const live = this.attach(rec, vm);
    crashPoint('boot:attached');
    // A guest that stopped before QMP was connected (a kernel that resets at once) sent its
    // SHUTDOWN to nobody: ask QEMU now (its events reach us from here on), answer it after the lock.
    // Asked beside finishStart's queries: QMP answers in order, so they cost one round trip.
    const stopped = vm.stopReason();
    stopped.catch(() => undefined); // awaited below; a failed start must not leave it unhandled
    await this.finishStart(rec, vm, live);
    const vnc = await setUpVnc(vm, c);
    if (vnc !== rec.extra.vnc) this.store.update(rec.id, { extra: { ...(this.store.get(rec.id)?.extra ?? rec.extra), vnc } });
    crashPoint('boot:launched');
    const state = opts.state ?? (opts.paused || opts.incoming ? 'paused' : 'running');
    rec.state = state;
    this.store.update(rec.id, { state, extra: { ...(this.store.get(rec.id)?.extra ?? rec.extra), restarting: undefined } });
    const why = await stopped;
    if (why) this.background(rec, this.onGuestStop(rec.id, live, why));
  }

  /** What a start does once QMP answers: the balloon target, the hooks (cgroup, pins), the vcpu threads. */
  async finishStart(rec: DomainRecord, vm: Vm, live: Live, adopted = false): Promise<void> {
    const c = rec.config;
    // All sent at once, not one after another: QMP answers them in order, in about one round trip
    // (on a host starting ten QEMUs at once, each round trip waits for a busy QEMU's main loop).
    const steps = await Promise.allSettled([
      c.memory < c.maxmem ? vm.command('balloon', { value: c.memory * 1048576 }) : undefined,
      adopted ? this.hooks.afterAdopt(rec, vm) : this.hooks.afterLaunch(rec, vm),
      vm.vcpuThreads(),
    ]);
    const failed = steps.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    live.vcpuTids = (steps[2] as PromiseFulfilledResult<VcpuThread[]>).value.map((t) => t.threadId);
  }

  /** The run dir goes; its QEMU log is kept beside the console log (xeno dmesg quotes it). */
  removeRunDir(rec: DomainRecord): void {
    keepQemuLog(rec.runDir, qemuLogFor(this.deps.config.stateDir, rec.name));
    rmSync(rec.runDir, { recursive: true, force: true });
  }

  /** Connect the toolstack to a QEMU: its console and its events. */
  attach(rec: DomainRecord, vm: Vm): Live {
    const paths = qemuPaths(rec.runDir);
    const console = new ConsoleHub(paths.serial, this.consoleLogFor(rec.name), this.deps.config.consoleLimitKb * 1024, {
      report: (m) => this.log.warn({ domid: rec.id, domain: rec.name }, m),
      hvcPath: paths.hvc,
      inputTo: consoleOfCmdline(rec.config.kernel !== undefined ? guestCmdline(rec.config) : undefined),
    });
    const live: Live = { vm, console, vcpuTids: [], stopping: false };
    this.live.set(rec.id, live);
    vm.on('guest-stop', (reason: GuestStopReason) => this.background(rec, this.onGuestStop(rec.id, live, reason)));
    vm.on('exit', () => this.background(rec, this.onQemuExit(rec.id, live)));
    return live;
  }

  // ---- what the guest did -------------------------------------------------------------------

  /** Work started by an event, not a request: its failure is logged, never thrown into the void. */
  background(rec: DomainRecord, work: Promise<void>): void {
    work.catch((e: unknown) => this.event(rec, 'error', `${rec.name}: ${e instanceof Error ? e.message : String(e)}`));
  }

  private actionFor(c: DomainConfig, reason: GuestStopReason): LifecycleAction {
    return reason === 'poweroff' ? c.onPoweroff : reason === 'reboot' ? c.onReboot : c.onCrash;
  }

  /** Answer what the guest did (also for a stop found at adoption). */
  async onGuestStop(id: number, live: Live, reason0: GuestStopReason): Promise<void> {
    if (live.stopping) return;
    await this.locks.run(id, async () => {
      const rec = this.store.get(id);
      if (!rec || this.live.get(id) !== live || live.stopping) return;
      // Already answered (the event and the check after a start may both report one stop).
      if (rec.state === 'shutdown' || rec.state === 'crashed') return;
      // A reboot asked through xenod is an ACPI shutdown the guest performs, then a restart.
      const reason: GuestStopReason = reason0 === 'poweroff' && rec.extra.rebootRequested ? 'reboot' : reason0;
      if (rec.extra.rebootRequested) this.store.update(id, { extra: { ...rec.extra, rebootRequested: false } });
      const action = this.actionFor(rec.config, reason);
      this.event(rec, reason, `guest ${reason === 'poweroff' ? 'powered off' : reason === 'reboot' ? 'rebooted' : 'crashed'}: on_${reason === 'crash' ? 'crash' : reason === 'reboot' ? 'reboot' : 'poweroff'}=${action}`);
      if (action === 'coredump-destroy' || action === 'coredump-restart') {
        // the dump is best effort: a failed one is reported, and the action still happens
        await dumpGuestMemory(live.vm, this.deps.config.stateDir, qemuPaths(rec.runDir).dir, rec).then(
          (file) => this.event(rec, 'coredump', `${rec.name}: memory dumped to ${file}`),
          (e: unknown) => this.event(rec, 'error', `${rec.name}: core dump failed: ${e instanceof Error ? e.message : String(e)}`),
        );
      }
      switch (action) {
        case 'destroy':
        case 'coredump-destroy':
          await this.destroyLocked(rec);
          return;
        case 'restart':
        case 'coredump-restart':
          await this.restarts.request(rec, reason);
          return;
        case 'rename-restart':
          await this.renameRestartLocked(rec, reason);
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
      const tail = qemuLogTail(runQemuLog(rec.runDir));
      this.event(rec, 'exit', `QEMU (pid ${rec.pid}) exited unexpectedly${live.vm.exitStatus ? ` (${live.vm.exitStatus})` : ''}; domain ${rec.name} removed; ` +
        (tail ? `the end of its log: ${tail}` : 'its log is empty'));
      await this.teardown(rec);
      this.store.remove(id);
    });
  }

  // ---- stop ---------------------------------------------------------------------------------

  /** Undo everything a domain holds on the host (QEMU, console, hooks' resources, run dir). */
  async teardown(rec: DomainRecord): Promise<void> {
    this.restarts.cancel(rec.id);
    const live = this.live.get(rec.id);
    if (live) {
      live.stopping = true;
      await live.vm.kill();
      live.console.close();
      this.live.delete(rec.id);
    } else {
      // Not attached (QMP did not answer at adoption, or a start died half-way): kill it by pid.
      this.adoption.forget(rec.id);
      const pid = this.deps.backend.findQemu(rec.runDir, rec.pid);
      if (pid) await this.deps.backend.killQemu(pid, rec.runDir);
    }
    crashPoint('destroy:killed');
    await this.hooks.afterStop(rec);
    this.removeRunDir(rec);
  }

  /**
   * Restart as Xen does: the old QEMU goes, a fresh one boots from the stored config (so changes
   * made since, such as maxmem, take effect). An in-place reset is avoided on purpose: after a
   * reset from the shutdown state the firmware resets once more, which reads as a second reboot.
   */
  async restartLocked(rec: DomainRecord): Promise<void> {
    // The intent first: a xenod dying between teardown and boot is followed by one that boots it.
    this.store.update(rec.id, { state: 'starting', extra: { ...this.store.get(rec.id)!.extra, restarting: true } });
    await this.teardown(rec);
    crashPoint('restart:torn-down');
    const fresh = this.store.get(rec.id)!;
    this.store.update(rec.id, { pid: null });
    try {
      await this.boot({ ...fresh, state: 'starting', pid: null }, {});
    } catch (e) {
      this.store.remove(rec.id);
      throw e;
    }
    this.event(rec, 'restart', `${rec.name} restarted (QEMU pid ${this.store.get(rec.id)?.pid})`);
  }

  /** Keep the stopped domain, frozen, as NAME--incarnation-ID and start a new NAME (a new id). */
  private async renameRestartLocked(rec: DomainRecord, reason: GuestStopReason): Promise<void> {
    if (await this.restarts.refused(rec, reason)) return;
    const keptAs = incarnationName(rec.name, rec.id);
    this.store.update(rec.id, { name: keptAs, config: { ...rec.config, name: keptAs }, state: reason === 'crash' ? 'crashed' : 'shutdown' });
    this.event({ id: rec.id, name: keptAs }, 'rename', `${rec.name} (${rec.id}) kept as ${keptAs}`);
    try {
      const fresh = await this.create(rec.config);
      this.event(fresh, 'restart', `${rec.name} restarted as domain ${fresh.id}; the old one is ${keptAs}`);
    } catch (e) {
      this.event(rec, 'error', `rename-restart: a new ${rec.name} could not start: ${e instanceof Error ? e.message : String(e)}`);
    }
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

  async destroyLocked(rec: DomainRecord): Promise<void> {
    this.store.update(rec.id, { state: 'dying' });
    crashPoint('destroy:dying');
    await this.teardown(rec);
    this.store.remove(rec.id);
    this.event(rec, 'destroy', `domain ${rec.name} (${rec.id}) destroyed`);
  }

  /**
   * Destroy preempts: the domain's long operations (save, an unplug wait, a migration...) are
   * aborted first, so the lock they hold is released promptly, then the domain goes.
   */
  async destroy(dom: string): Promise<void> {
    const first = this.resolve(dom);
    if (!isLegal(first.state, 'destroy')) return this.withDomain(dom, 'destroy', (rec) => this.destroyLocked(rec));
    const { aborted, release } = this.longOps.doom(first.id, `domain ${first.name} is being destroyed`);
    try {
      if (aborted.length) this.log.info({ domid: first.id, domain: first.name }, `destroy of ${first.name} cancels its ${aborted.join(', ')}`);
      await this.withDomain(dom, 'destroy', (rec) => this.destroyLocked(rec));
    } finally {
      release();
    }
  }

  /**
   * Run a long operation on domain `id` that destroy may cancel: `fn` gets a signal destroy aborts
   * (its reason is the error to end with); it must check it at each wait and then return promptly,
   * leaving nothing half-made. Refused (BAD_STATE, cancelled) while a destroy is on its way.
   */
  longOperation<T>(id: number, kind: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    return this.longOps.run(id, kind, fn);
  }

  /** ACPI power button; with wait, returns once the domain is gone (or preserved). */
  async shutdown(dom: string, wait: boolean, timeoutMs = 120_000): Promise<void> {
    const rec = await this.withDomain(dom, 'shutdown', async (r) => {
      const l = this.liveOf(r);
      if (r.state === 'paused') await l.vm.resume();
      await l.vm.powerdown();
      this.event(r, 'shutdown', `shutdown requested for ${r.name}`);
      this.agentShutdownFallback(r, l, 'powerdown');
      return r;
    });
    if (wait) await this.waitGone(rec.id, timeoutMs);
  }

  /**
   * A guest that ignores the ACPI power button (no acpid, a button handler masked) is asked again
   * through its agent (guest-shutdown, the reboot itself for a reboot) after xeno-agent-shutdown-delay, if it runs one.
   */
  private agentShutdownFallback(rec: DomainRecord, live: Live, mode: 'powerdown' | 'reboot'): void {
    const afterMs = this.deps.config.agentShutdownDelayS * 1000;
    const t = setTimeout(() => {
      if (live.vm.exited || live.stopping || this.live.get(rec.id) !== live) return;
      void this.guestAgent(rec).shutdown(mode).then(
        () => this.event(rec, mode === 'reboot' ? 'reboot' : 'shutdown', `${rec.name} ignored the ACPI power button: ${mode === 'reboot' ? 'reboot' : 'shutdown'} asked through its guest agent`),
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
        // The admin asks: a fresh chance, whatever the restart limit said.
        this.restarts.reset(rec);
        await this.restartLocked(this.store.get(rec.id)!);
        return;
      }
      this.store.update(rec.id, { extra: { ...rec.extra, rebootRequested: true } });
      await l.vm.powerdown();
      this.event(rec, 'reboot', `reboot requested for ${rec.name}`);
      this.agentShutdownFallback(rec, l, 'reboot');
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

  /** Re-adopt every QEMU an earlier xenod left running, and finish what it left half-done (adopt.ts). */
  adoptAll(): Promise<void> {
    return this.adoption.adoptAll();
  }

  /** Leave every guest running: drop our connections only. */
  detachAll(): void {
    this.restarts.closeAll();
    this.adoption.closeAll();
    for (const l of this.live.values()) {
      l.stopping = true;
      l.console.close();
      l.vm.detach();
    }
    this.live.clear();
  }
}
