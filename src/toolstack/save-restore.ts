/**
 * Save and restore (xm save / xm restore), and the managed save of every guest when xenod stops.
 *
 * save: the guest is paused, QEMU writes its state through xenod into FILE (savefile/), the file is
 * made durable, then QEMU quits and the domain's resources are freed (with -c, a checkpoint, the
 * guest runs on instead). A failure at any point resumes the guest and removes FILE.partial. Before
 * the guest is paused an intent is written to the state dir, so a xenod that dies mid-save is
 * followed by one that resumes the guest (or finishes a save that was complete) and removes the
 * partial file.
 *
 * restore: every check that can refuse (format, QEMU compatibility, name, disks, memory) runs before
 * anything is created; then a QEMU is started waiting for its state, the file is streamed in once
 * and verified, and only then is the guest resumed. A failure destroys the new QEMU.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { resyncGuestClock } from './guest-agent-ops.js';
import { XenoError, errorMessage, isXenoError, type ErrorCode } from '../common/errors.js';
import { XENO_VERSION } from '../common/version.js';
import { crashPoint } from '../common/test-crash.js';
import { ensureFits } from '../host/memory.js';
import type { Vm } from '../hypervisor/backend.js';
import { validateMachineType } from '../config/validate.js';
import type { DomainConfig } from '../model/domain-config.js';
import { compareQemuVersions, type ProgressFn, type SaveFileInfo, type SaveHeader } from './savefile/format.js';
import { loadVmFromFile, openIncomingFile, saveVmToFile } from './savefile/migrate-unix.js';
import { openSaveFile } from './savefile/reader.js';
import { partialPathFor, syncDir, writeDurable } from './savefile/writer.js';
import { sleepUnlessAborted } from './long-ops.js';
import { refuseStateCopyAfterUnplug } from './runtime.js';
import type { DomainRecord } from './store.js';
import type { Toolstack } from './toolstack.js';

const execFileP = promisify(execFile);
const MiB = 1024 * 1024;

export interface SaveResult {
  name: string;
  /** The domain id the guest had (gone unless checkpoint). */
  id: number;
  file: string;
  /** Bytes of the file. */
  size: number;
  /** Bytes of QEMU's migration stream in it. */
  payloadBytes: number;
  sha256: string;
  checkpoint: boolean;
  /** The guest's state as saved (a paused guest restores paused). */
  state: 'running' | 'paused';
  /** ms from the request to the durable file (and, without checkpoint, QEMU gone). */
  elapsedMs: number;
  /** ms the guest was paused by the save (checkpoint of a running guest: until it ran again). */
  pausedMs?: number;
  /** QEMU's own migration time, ms. */
  qemuTotalMs?: number;
  /** ms from the request to the file being complete and durable (before QEMU quits). */
  durableMs: number;
}

export interface RestoreResult {
  name: string;
  /** The new domain id. */
  id: number;
  file: string;
  state: 'running' | 'paused';
  bytes: number;
  /** ms from the request to the guest running (or paused, verified). */
  elapsedMs: number;
  /** Where the time went: QEMU start-up, streaming the state in. */
  launchMs: number;
  loadMs: number;
}

export interface SaveOpts {
  checkpoint?: boolean;
  /** Freeze the guest's file systems through its agent for the save (thawed after, or at restore). */
  freeze?: boolean;
  onProgress?: ProgressFn;
}

export interface RestoreOpts {
  /** Leave the guest paused (xm restore -p). */
  paused?: boolean;
  onProgress?: ProgressFn;
  /** The result of plan(file), when the caller already checked the file. */
  plan?: RestorePlan;
}

/** What a dying xenod leaves on disk about a save in progress. */
interface SaveIntent {
  domid: number;
  name: string;
  file: string;
  partial: string;
  wasRunning: boolean;
  checkpoint: boolean;
  /** writing: FILE.partial may exist; written: FILE is complete and durable. */
  phase: 'writing' | 'written';
  started: string;
}

/** A file restore has checked, ready to be brought back. */
export interface RestorePlan {
  info: SaveFileInfo;
  /** The config the domain gets (the saved one). */
  config: DomainConfig;
  /** The config QEMU is started with: the RAM size the stream was saved from. */
  launchConfig: DomainConfig;
}

function fail(code: ErrorCode, message: string, details?: Record<string, unknown>): XenoError {
  return new XenoError(code, message, details);
}

export class SaveRestore {
  private machineTypes?: Promise<Set<string>>;

  constructor(readonly ts: Toolstack) {}

  private get stateDir(): string {
    return this.ts.deps.config.stateDir;
  }

  /** Where intents of saves in progress are kept. */
  get intentDir(): string {
    return path.join(this.stateDir, 'save-intents');
  }

  /** Where xenod keeps the guests it saved on stop (managed save). */
  get managedDir(): string {
    return path.join(this.stateDir, 'managed-save');
  }

  private intentFile(domid: number): string {
    return path.join(this.intentDir, `${domid}.json`);
  }

  private writeIntent(i: SaveIntent): void {
    mkdirSync(this.intentDir, { recursive: true, mode: 0o700 });
    writeDurable(this.intentFile(i.domid), JSON.stringify(i));
  }

  private clearIntent(domid: number): void {
    rmSync(this.intentFile(domid), { force: true });
  }

  // ---- save ---------------------------------------------------------------------------------

  /** `xm save DOM FILE [-c]`. */
  async save(dom: string, file: string, opts: SaveOpts = {}): Promise<SaveResult> {
    const t0 = performance.now();
    if (!path.isAbsolute(file)) throw fail('BAD_REQUEST', `save file must be an absolute path (got '${file}')`);
    const target = path.resolve(file);
    const checkpoint = opts.checkpoint ?? false;
    return this.ts.withDomain(dom, 'save', (rec) => this.ts.longOperation(rec.id, 'save', async (signal) => {
      refuseStateCopyAfterUnplug(rec, this.ts.deps.backend.caps.qemuVersion, 'save');
      this.checkDestination(rec, target);
      const vm = this.ts.liveOf(rec).vm;
      const wasRunning = rec.state === 'running';
      const header: SaveHeader = {
        xenoVersion: XENO_VERSION,
        config: rec.config,
        name: rec.name,
        uuid: rec.uuid,
        machineType: rec.machineType,
        qemuVersion: this.ts.deps.backend.caps.qemuVersion,
        accel: rec.accel,
        state: wasRunning ? 'running' : 'paused',
        memoryMb: rec.config.memory,
        maxmemMb: (await bootMemoryMb(vm)) ?? rec.config.maxmem,
        created: new Date().toISOString(),
      };
      const intent: SaveIntent = {
        domid: rec.id, name: rec.name, file: target, partial: partialPathFor(target), wasRunning, checkpoint,
        phase: 'writing', started: header.created,
      };
      const agent = this.ts.guestAgent(rec);
      if (opts.freeze) {
        if (!wasRunning) throw fail('BAD_STATE', `save ${rec.name}: --freeze needs a running guest (its agent freezes the file systems)`);
        await agent.fsfreeze().catch((e: unknown) => {
          throw fail('BAD_STATE', `save ${rec.name}: the guest agent could not freeze its file systems: ${errorMessage(e)}; the guest was not touched`);
        });
      }
      const thaw = async () => {
        if (opts.freeze) await agent.fsthaw().catch(() => undefined);
      };
      let pausedAt: number | undefined;
      let started = false;
      let res;
      try {
        res = await saveVmToFile(vm, target, header, opts.onProgress, {
          signal,
          beforeMigrate: async () => {
            started = true;
            this.writeIntent(intent);
            this.ts.deps.store.update(rec.id, { state: 'saving' });
            if (wasRunning) {
              await vm.pause();
              pausedAt = performance.now();
            }
            await testHold(signal);
          },
        });
      } catch (e) {
        if (signal.aborted) {
          // destroy preempted the save: the partial file is gone, the guest goes with the destroy.
          await thaw();
          this.clearIntent(rec.id);
          this.ts.event(rec, 'save-cancelled', `save of ${rec.name} to ${target} cancelled (${errorMessage(signal.reason)}); the partial file ${intent.partial} was removed`);
          throw signal.reason;
        }
        if (!started) {
          await thaw();
          throw fail(isXenoError(e) ? e.code : 'HOST_ERROR', `save of ${rec.name} to ${target} failed: ${errorMessage(e)}; the guest was not touched`);
        }
        const left = await this.resumeAfterFailure(rec, vm, wasRunning);
        await thaw();
        this.clearIntent(rec.id);
        const msg = `save of ${rec.name} to ${target} failed: ${errorMessage(e)}; ${left}, and the partial file ${intent.partial} was removed`;
        this.ts.event(rec, 'save-failed', msg);
        throw fail(isXenoError(e) ? e.code : 'HOST_ERROR', msg, { file: target, guest: wasRunning ? 'running' : 'paused' });
      }
      const durableMs = performance.now() - t0;
      this.writeIntent({ ...intent, phase: 'written' });
      crashPoint('save:written');
      let pausedMs: number | undefined;
      const mib = (res.size / MiB).toFixed(1);
      if (checkpoint) {
        try {
          if (wasRunning) await vm.resume();
          else await backToPaused(vm);
          await thaw();
        } finally {
          if (pausedAt !== undefined) pausedMs = performance.now() - pausedAt;
          this.ts.deps.store.update(rec.id, { state: wasRunning ? 'running' : 'paused' });
          this.clearIntent(rec.id);
        }
        this.ts.event(rec, 'save', `checkpoint of ${rec.name} saved to ${target} (${mib} MiB); it keeps ${wasRunning ? 'running' : 'paused'}`);
      } else {
        await this.ts.releaseLocked(rec, 'save', `${rec.name} (${rec.id}) saved to ${target} (${mib} MiB); its QEMU has exited`);
        this.clearIntent(rec.id);
      }
      return {
        name: rec.name, id: rec.id, file: target, size: res.size, payloadBytes: res.payloadBytes, sha256: res.sha256, checkpoint,
        state: header.state, elapsedMs: performance.now() - t0, pausedMs, qemuTotalMs: res.totalTimeMs, durableMs,
      };
    }));
  }

  /** Refuse destinations that cannot work before anything is paused. */
  private checkDestination(rec: DomainRecord, target: string): void {
    let st;
    try {
      st = statSync(target);
    } catch {
      st = undefined;
    }
    if (st?.isDirectory()) throw fail('BAD_REQUEST', `${target} is a directory: name the save file`);
    const own = [rec.config.kernel, rec.config.ramdisk, ...rec.config.disks.map((d) => d.target)].filter(Boolean).map((p) => path.resolve(p!));
    if (own.includes(target)) throw fail('BAD_REQUEST', `${target} is one of ${rec.name}'s own kernel/ramdisk/disk files: save elsewhere`);
    if (!existsSync(path.dirname(target))) throw fail('NO_SUCH_FILE', `cannot save to ${target}: directory ${path.dirname(target)} does not exist`);
  }

  /** After a failed save: cancel what QEMU may still do and let the guest run again if it ran. */
  private async resumeAfterFailure(rec: DomainRecord, vm: Vm, wasRunning: boolean): Promise<string> {
    if (vm.exited) {
      // QEMU itself died: nothing to resume; the toolstack's exit handler removes the domain.
      return 'its QEMU exited';
    }
    try {
      if (wasRunning) await vm.resume();
      else await backToPaused(vm);
      this.ts.deps.store.update(rec.id, { state: wasRunning ? 'running' : 'paused' });
      return `the guest was left ${wasRunning ? 'running' : 'paused'}`;
    } catch (e) {
      this.ts.deps.store.update(rec.id, { state: 'paused' });
      return `the guest could not be resumed (${errorMessage(e)}) and is paused`;
    }
  }

  // ---- restore ------------------------------------------------------------------------------

  /** The QEMU machine types this host's QEMU offers. */
  private supportedMachineTypes(): Promise<Set<string>> {
    this.machineTypes ??= execFileP(this.ts.deps.backend.binary, ['-machine', 'help']).then(
      ({ stdout }) => new Set(stdout.split('\n').slice(1).map((l) => l.trim().split(/\s+/)[0]!).filter(Boolean)),
      () => new Set<string>(),
    );
    return this.machineTypes;
  }

  /** Every check a restore makes before it creates anything; throws the reason to refuse. */
  async plan(file: string): Promise<RestorePlan> {
    if (!path.isAbsolute(file)) throw fail('BAD_REQUEST', `save file must be an absolute path (got '${file}')`);
    const info = await openSaveFile(file);
    const h = info.header;
    const caps = this.ts.deps.backend.caps;
    const refuse = (code: ErrorCode, why: string) => fail(code, `cannot restore ${info.path}: ${why}`, { file: info.path, name: h.name });
    let config: DomainConfig;
    try {
      // A header is input like any other (its checksum proves only that it is unchanged): the one validator first.
      validateMachineType(h.machineType);
      config = this.ts.validateConfig({ ...h.config, name: h.name, uuid: h.uuid ?? h.config.uuid });
    } catch (e) {
      if (isXenoError(e)) throw refuse(e.code, e.message);
      throw e;
    }
    if (compareQemuVersions(caps.qemuVersion, h.qemuVersion) < 0) {
      throw refuse('SAVE_FORMAT', `it was saved by QEMU ${h.qemuVersion}, this host has the older QEMU ${caps.qemuVersion}`);
    }
    if (h.machineType !== caps.machineType && !(await this.supportedMachineTypes()).has(h.machineType)) {
      throw refuse('SAVE_FORMAT', `it needs QEMU machine type ${h.machineType}, which ${this.ts.deps.backend.binary} ${caps.qemuVersion} does not offer`);
    }
    const existing = this.ts.deps.store.byName(config.name);
    if (existing) throw refuse('DOMAIN_EXISTS', `a domain named ${config.name} already exists (id ${existing.id}, ${existing.state})`);
    let launchConfig: DomainConfig;
    try {
      launchConfig = this.ts.validateForCreate({ ...config, maxmem: h.maxmemMb, memory: Math.min(config.memory, h.maxmemMb) });
      // Charge what the domain may grow to, as before the save.
      ensureFits(this.ts.memoryAccount(), this.ts.chargeOf(config), `restore ${config.name}`);
    } catch (e) {
      if (isXenoError(e)) throw refuse(e.code, e.message);
      throw e;
    }
    return { info, config, launchConfig };
  }

  /** `xm restore FILE [-p]`: a new domain (new id) from the file, resumed once verified. */
  async restore(file: string, opts: RestoreOpts = {}): Promise<RestoreResult> {
    const t0 = performance.now();
    const plan = opts.plan ?? (await this.plan(file));
    const { info } = plan;
    const h = info.header;
    // QEMU reads the file itself (fd 3); the worker hashes it meanwhile, from while QEMU starts.
    const incoming = await openIncomingFile(info);
    let rec: DomainRecord;
    try {
      rec = await incoming.launch((fd) => this.ts.create(plan.launchConfig, { incoming: true, incomingFd: fd, state: 'starting', machineType: h.machineType }));
    } catch (e) {
      throw isXenoError(e) ? fail(e.code, `cannot restore ${info.path}: ${e.message}`, e.details) : e;
    }
    const t1 = performance.now();
    const paused = opts.paused === true || h.state === 'paused';
    try {
      const vm = this.ts.liveOf(rec).vm;
      const loaded = await loadVmFromFile(vm, info.path, info, opts.onProgress, incoming.load);
      if (!paused) await vm.resume();
      const t2 = performance.now();
      this.ts.deps.store.update(rec.id, {
        state: paused ? 'paused' : 'running',
        ...(plan.config.maxmem !== plan.launchConfig.maxmem || plan.config.memory !== plan.launchConfig.memory ? { config: plan.config } : {}),
      });
      this.ts.event(rec, 'restore', `${rec.name} restored from ${info.path} as domain ${rec.id} (${paused ? 'paused' : 'running'})`);
      if (!paused) this.afterResume(rec);
      return {
        name: rec.name, id: rec.id, file: info.path, state: paused ? 'paused' : 'running', bytes: loaded.bytes,
        elapsedMs: t2 - t0, launchMs: t1 - t0, loadMs: t2 - t1,
      };
    } catch (e) {
      await incoming.load.prepared?.close(); // (loadVmFromFile closes it; not when it never ran)
      await this.ts.destroy(String(rec.id)).catch(() => undefined);
      const msg = `cannot restore ${info.path}: ${errorMessage(e)}; the new domain was destroyed, nothing was left running`;
      this.ts.event(rec, 'restore-failed', msg);
      throw fail(isXenoError(e) ? e.code : 'INTERNAL', msg, { file: info.path });
    }
  }

  /**
   * The guest's clock stood still while it was saved: its agent (if it runs one) sets it from the
   * host's, and thaws file systems a `save --freeze` left frozen. In the background: a guest
   * without an agent must not slow the restore down.
   */
  private afterResume(rec: DomainRecord): void {
    const agent = this.ts.guestAgent(rec);
    void (async () => {
      if (!(await resyncGuestClock(agent))) return;
      // told when it is done: the thaw after it may wait on a busy agent
      this.ts.event(rec, 'restore', `${rec.name}: clock set through the guest agent`);
      await agent.fsthaw().catch(() => undefined);
    })().catch(() => undefined);
  }

  // ---- after a xenod crash ------------------------------------------------------------------

  /**
   * Finish what a dead xenod left: for each save intent, remove the partial file, cancel QEMU's
   * migration and resume the guest if it ran; a save already complete (phase written, not a
   * checkpoint) is finished instead (QEMU quits, the domain is removed), as the file holds it.
   * Runs at start-up, after the toolstack has re-adopted the QEMUs.
   */
  async recover(): Promise<void> {
    let names: string[];
    try {
      names = readdirSync(this.intentDir).filter((f) => f.endsWith('.json'));
    } catch {
      return;
    }
    for (const n of names) {
      const f = path.join(this.intentDir, n);
      let intent: SaveIntent;
      try {
        intent = JSON.parse(readFileSync(f, 'utf8')) as SaveIntent;
      } catch {
        rmSync(f, { force: true });
        continue;
      }
      try {
        await this.recoverOne(intent);
      } catch (e) {
        this.ts.event(null, 'save-recover', `could not recover the interrupted save of ${intent.name} to ${intent.file}: ${errorMessage(e)}`);
      }
      rmSync(f, { force: true });
    }
  }

  private async recoverOne(intent: SaveIntent): Promise<void> {
    rmSync(intent.partial, { force: true });
    const rec = this.ts.deps.store.get(intent.domid);
    if (!rec || rec.name !== intent.name) {
      this.ts.event(null, 'save-recover', `interrupted save of ${intent.name} to ${intent.file}: the domain is gone; partial file removed`);
      return;
    }
    const vm = this.ts.liveOf(rec).vm;
    const complete = intent.phase === 'written' && !intent.checkpoint && existsSync(intent.file);
    if (complete) {
      await this.ts.releaseLocked(rec, 'save', `${rec.name} (${rec.id}) saved to ${intent.file} (completed after a xenod restart); its QEMU has exited`);
      return;
    }
    try {
      await vm.command('migrate_cancel');
    } catch {
      /* nothing to cancel */
    }
    for (let i = 0; i < 200; i++) {
      const q = await vm.command<{ status?: string }>('query-migrate').catch(() => ({ status: 'none' }));
      if (!q.status || !['setup', 'active', 'cancelling', 'device', 'pre-switchover'].includes(q.status)) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    if (intent.wasRunning) await vm.resume();
    else await backToPaused(vm);
    this.ts.deps.store.update(rec.id, { state: intent.wasRunning ? 'running' : 'paused' });
    this.ts.event(rec, 'save-recover', `interrupted save of ${rec.name} to ${intent.file}: partial file removed, guest ${intent.wasRunning ? 'resumed' : 'left paused'}`);
  }

  // ---- managed save (xenod stop / start) -----------------------------------------------------

  /** Save every running or paused guest into the state dir (xenod stopping with save-on-stop). */
  async saveAll(concurrency = 2): Promise<Array<{ name: string; ok: boolean; message: string }>> {
    mkdirSync(this.managedDir, { recursive: true, mode: 0o700 });
    const todo = this.ts.deps.store.all().filter((r) => r.state === 'running' || r.state === 'paused');
    const results: Array<{ name: string; ok: boolean; message: string }> = [];
    const worker = async () => {
      for (let rec = todo.shift(); rec; rec = todo.shift()) {
        const file = path.join(this.managedDir, `${rec.name}.save`);
        try {
          const r = await this.save(String(rec.id), file);
          results.push({ name: rec.name, ok: true, message: `saved to ${file} (${(r.size / MiB).toFixed(1)} MiB)` });
        } catch (e) {
          // The guest keeps running; the next xenod re-adopts it.
          results.push({ name: rec.name, ok: false, message: errorMessage(e) });
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker));
    if (results.length) await syncDir(this.managedDir).catch(() => undefined);
    return results;
  }

  /** Restore what saveAll() left (xenod starting); a file is removed once its guest runs again. */
  async restoreAll(): Promise<Array<{ name: string; ok: boolean; message: string }>> {
    let files: string[];
    try {
      files = readdirSync(this.managedDir).filter((f) => f.endsWith('.save')).map((f) => path.join(this.managedDir, f));
    } catch {
      return [];
    }
    const results: Array<{ name: string; ok: boolean; message: string }> = [];
    for (const file of files.sort()) {
      try {
        const r = await this.restore(file);
        rmSync(file, { force: true });
        results.push({ name: r.name, ok: true, message: `restored as domain ${r.id} (${r.state})` });
      } catch (e) {
        // Kept for the admin to restore by hand once the cause is fixed.
        const msg = `managed save ${file} not restored: ${errorMessage(e)}`;
        this.ts.event(null, 'restore-failed', msg);
        results.push({ name: path.basename(file, '.save'), ok: false, message: msg });
      }
    }
    return results;
  }
}

/** MiB of RAM the running QEMU was started with: the size the stream's RAM has. */
async function bootMemoryMb(vm: Vm): Promise<number | null> {
  try {
    const s = await vm.command<{ 'base-memory': number; 'plugged-memory'?: number }>('query-memory-size-summary');
    return Math.round((s['base-memory'] + (s['plugged-memory'] ?? 0)) / MiB);
  } catch {
    return null;
  }
}

/**
 * After a completed migration QEMU sits in `postmigrate`: disks inactivated, and refusing another
 * migration. `cont` is its only way out; for a guest that was paused, `stop` is sent in the same
 * breath (pipelined on QMP), so it runs at most for the instant between the two commands.
 */
async function backToPaused(vm: Vm): Promise<void> {
  if ((await vm.runState()) !== 'postmigrate') return;
  await Promise.all([vm.command('cont'), vm.command('stop')]);
}

/** Test-only fault injection: hold a save after the guest is paused (to kill xenod mid-save). */
async function testHold(signal: AbortSignal): Promise<void> {
  const ms = Number(process.env.XENO_TEST_HOLD_SAVE_MS ?? 0);
  if (ms > 0) await sleepUnlessAborted(ms, signal);
}
