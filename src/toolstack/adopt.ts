/**
 * A starting xenod takes over what an earlier one left, whatever instant it died at:
 *
 * - every QEMU under its run dir is found by pid file and command line (argv names the run dir),
 *   also when the record still says `starting` (the pid is recorded right after the spawn);
 * - a QEMU without a record (a create rolled back, a destroy half-done) is killed; a record whose
 *   QEMU is gone is removed, unless a restart was under way (it is booted again);
 * - transitional states converge: `dying` finishes the destroy, `starting` finishes the start (or
 *   destroys a QEMU left waiting for an incoming state that will never come), `saving` without a
 *   save intent takes the state QEMU is in (save-restore.ts recovers the ones with an intent);
 * - a guest that stopped meanwhile (poweroff, reboot, panic: QemuVm.stopReason) gets its
 *   on_poweroff / on_reboot / on_crash, and a delayed restart is scheduled again;
 * - a QEMU that runs but does not answer QMP is kept (shown `qmp: unresponsive`), retried in the
 *   background with back-off, and can still be destroyed (by pid);
 * - taps, firewall chains, dnsmasq entries, cgroups and run dirs of domains that are gone are swept.
 */
import { existsSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { errorMessage } from '../common/errors.js';
import type { Vm } from '../hypervisor/backend.js';
import { vifsInQemu } from '../host/network/hotplug.js';
import { reconcileDisks } from './block-reconcile.js';
import type { DomainState } from '../model/domain-state.js';
import type { DomainRecord } from './store.js';
import type { Toolstack } from './toolstack.js';

/** How long one attempt waits for QMP, and the retry back-off (1 s doubling up to the cap). */
const ADOPT_TIMEOUT_MS = 5000;
const RETRY_FIRST_MS = 1000;
const RETRY_CAP_MS = 30_000;

export interface Unanswered {
  pid: number;
  since: number;
  attempts: number;
  lastError: string;
  timer?: NodeJS.Timeout;
}

export class Adoption {
  private readonly pending = new Map<number, Unanswered>();
  private closed = false;

  constructor(private readonly ts: Toolstack) {}

  private get runRoot(): string {
    return path.join(this.ts.deps.config.stateDir, 'run');
  }

  /** Set while the domain's QEMU runs without answering QMP. */
  unanswered(id: number): Unanswered | undefined {
    return this.pending.get(id);
  }

  /** Stop retrying (the domain is being destroyed). */
  forget(id: number): void {
    const u = this.pending.get(id);
    if (u?.timer) clearTimeout(u.timer);
    this.pending.delete(id);
  }

  closeAll(): void {
    this.closed = true;
    for (const id of [...this.pending.keys()]) this.forget(id);
  }

  async adoptAll(): Promise<void> {
    const records = this.ts.store.all();
    for (const q of this.ts.deps.backend.listQemus(this.runRoot)) {
      if (records.some((r) => r.runDir === q.runDir)) continue;
      await this.ts.deps.backend.killQemu(q.pid, q.runDir).catch(() => undefined);
      rmSync(q.runDir, { recursive: true, force: true });
      this.ts.event(null, 'orphan', `killed QEMU pid ${q.pid} of ${q.runDir}: no domain has it (a create or destroy cut short by a xenod crash)`, 'warn');
    }
    for (const rec of records) {
      try {
        await this.ts.runLocked(rec.id, () => this.adoptOne(rec.id));
      } catch (e) {
        this.ts.event(rec, 'error', `adopting ${rec.name} (${rec.id}) failed: ${errorMessage(e)}`, 'warn');
      }
    }
    await this.sweep();
  }

  /** What no domain owns any more: run dirs, and the hooks' host resources (taps, chains, cgroups). */
  private async sweep(): Promise<void> {
    const known = this.ts.store.all();
    let dirs: string[] = [];
    try {
      dirs = readdirSync(this.runRoot);
    } catch {
      /* no run dir yet */
    }
    for (const d of dirs) {
      const dir = path.join(this.runRoot, d);
      if (!known.some((r) => r.runDir === dir) && !this.ts.deps.backend.findQemu(dir)) rmSync(dir, { recursive: true, force: true });
    }
    await this.ts.hooks.sweep?.(known).catch((e: unknown) => this.ts.log.warn(`sweeping host resources of gone domains failed: ${errorMessage(e)}`));
  }

  /** Under the domain's lock. */
  private async adoptOne(id: number): Promise<void> {
    const rec = this.ts.store.get(id);
    if (!rec) return;
    if (rec.state === 'dying') {
      await this.ts.teardown(rec);
      this.ts.store.remove(id);
      this.ts.event(rec, 'destroy', `domain ${rec.name} (${id}) destroyed (a destroy finished after a xenod restart)`);
      return;
    }
    const pid = this.ts.deps.backend.findQemu(rec.runDir, rec.pid);
    if (!pid) {
      if (rec.extra.restarting) {
        this.ts.event(rec, 'restart', `${rec.name}: a restart was cut short by a xenod crash; booting it again`);
        await this.ts.restartLocked(rec);
        return;
      }
      await this.removeLost(rec, `QEMU${rec.pid ? ` pid ${rec.pid}` : ''} is gone`);
      return;
    }
    if (pid !== rec.pid) this.ts.store.update(id, { pid });
    await this.connect({ ...rec, pid }, pid);
  }

  private async removeLost(rec: DomainRecord, why: string): Promise<void> {
    this.forget(rec.id);
    await this.ts.hooks.afterStop(rec).catch(() => undefined);
    this.ts.removeRunDir(rec);
    this.ts.store.remove(rec.id);
    this.ts.event(rec, 'lost', `domain ${rec.name} (${rec.id}): ${why}; removed`, 'warn');
  }

  private async connect(rec: DomainRecord, pid: number): Promise<void> {
    let vm: Vm | null;
    try {
      vm = await this.ts.deps.backend.adopt(pid, rec.runDir, ADOPT_TIMEOUT_MS);
    } catch (e) {
      this.keepUnanswered(rec, pid, errorMessage(e));
      return;
    }
    if (!vm) {
      await this.removeLost(rec, `QEMU pid ${pid} is gone`);
      return;
    }
    const waited = this.pending.get(rec.id);
    this.forget(rec.id);
    await this.takeOver(rec, vm, waited);
  }

  private keepUnanswered(rec: DomainRecord, pid: number, error: string): void {
    if (this.closed) return;
    const u = this.pending.get(rec.id) ?? { pid, since: Date.now(), attempts: 0, lastError: error };
    u.attempts++;
    u.lastError = error;
    u.pid = pid;
    this.pending.set(rec.id, u);
    const delay = Math.min(RETRY_CAP_MS, RETRY_FIRST_MS * 2 ** (u.attempts - 1));
    if (u.attempts === 1) {
      this.ts.event(rec, 'adopt-pending', `${rec.name} (${rec.id}): QEMU pid ${pid} runs but does not answer QMP; kept as ${rec.state}, retried in the background (${error})`, 'warn');
    }
    u.timer = setTimeout(() => {
      u.timer = undefined;
      this.ts.background(rec, this.ts.runLocked(rec.id, () => this.retry(rec.id)));
    }, delay);
    u.timer.unref();
  }

  private async retry(id: number): Promise<void> {
    const u = this.pending.get(id);
    const rec = this.ts.store.get(id);
    if (!u || !rec || this.closed) return;
    const pid = this.ts.deps.backend.findQemu(rec.runDir, u.pid);
    if (!pid) {
      await this.removeLost(rec, `QEMU pid ${u.pid} ended before it answered QMP`);
      return;
    }
    await this.connect(rec, pid);
  }

  /** QMP answers: attach, finish what was half-done, answer what the guest did meanwhile. */
  private async takeOver(rec: DomainRecord, vm: Vm, waited?: Unanswered): Promise<void> {
    const id = rec.id;
    const live = this.ts.attach(rec, vm);
    const run = await vm.runState();
    const after = waited ? ` after ${Math.round((Date.now() - waited.since) / 1000)} s without QMP` : '';
    if (rec.state === 'starting' && run === 'inmigrate') {
      // A restore or an incoming migration cut short: its QEMU waits for a state that never comes.
      await this.ts.destroyLocked(rec);
      this.ts.event(rec, 'lost', `${rec.name} (${id}): its restore or incoming migration was cut short by a xenod crash; the waiting QEMU was destroyed`, 'warn');
      return;
    }
    if (rec.state === 'starting') {
      await this.ts.finishStart(rec, vm, live, true);
      const state: DomainState = run === 'running' ? 'running' : 'paused';
      this.ts.store.update(id, { state, extra: { ...this.ts.store.get(id)!.extra, restarting: undefined } });
      this.ts.event(rec, 'adopt', `finished the start of ${rec.name} (${id}) cut short by a xenod crash: QEMU pid ${vm.pid}, ${run}${after}`);
    } else {
      live.vcpuTids = (await vm.vcpuThreads()).map((t) => t.threadId);
      await this.ts.hooks.afterAdopt(rec, vm);
      await this.reconcile(rec, vm, run, live.vcpuTids.length);
      this.ts.event(rec, 'adopt', `re-adopted ${rec.name} (${id}), QEMU pid ${vm.pid}, ${run}${after}`);
    }
    const cur = this.ts.store.get(id);
    if (!cur) return;
    // The guest stopped while no daemon was watching: answer it now (after this lock is released).
    const why = await vm.stopReason();
    if (why && cur.state !== 'shutdown' && cur.state !== 'crashed') this.ts.background(cur, this.ts.onGuestStop(id, live, why));
    else if (run === 'running' && cur.state === 'paused') this.ts.store.update(id, { state: 'running' });
    else if (run === 'paused' && cur.state === 'running') this.ts.store.update(id, { state: 'paused' });
    this.ts.restarts.resume(cur);
  }

  /** The stored config and state follow what an operation cut short did to QEMU. */
  private async reconcile(rec: DomainRecord, vm: Vm, run: string, vcpus: number): Promise<void> {
    const cur = this.ts.store.get(rec.id)!;
    let config = cur.config;
    // vcpu-set: QEMU's vcpus are the truth.
    if (vcpus > 0 && config.vcpus !== vcpus) config = { ...config, vcpus };
    // network-attach/detach: the config keeps the vifs whose NIC QEMU has (the hook did the backends).
    const nics = await vifsInQemu(vm).catch(() => undefined);
    if (nics && config.vifs.some((v) => !nics.has(v.devid))) config = { ...config, vifs: config.vifs.filter((v) => nics.has(v.devid)) };
    // block-attach/detach: the config keeps the disks whose device QEMU has (block-reconcile.ts).
    const disks = await reconcileDisks(vm, config).catch(() => undefined);
    if (disks && disks.config !== config) {
      config = disks.config;
      this.ts.event(rec, 'adopt', `${rec.name}: a block-attach/-detach cut short by a xenod crash is completed in its config (${[...disks.added.map((v) => `${v} attached`), ...disks.removed.map((v) => `${v} detached`)].join(', ')})`);
    }
    if (config !== cur.config) this.ts.store.update(rec.id, { config });
    if (disks?.removed.length) await this.ts.hooks.afterUnplug?.({ ...cur, config }, config).catch(() => undefined);
    // mem-set: the stored target is sent again (idempotent), so balloon and record agree.
    if (run === 'running' || run === 'paused') {
      await vm.command('balloon', { value: config.memory * 1048576 }).catch(() => undefined);
    }
    // A save with no intent left (save-restore.ts recovers those with one): the state QEMU is in.
    const intent = path.join(this.ts.deps.config.stateDir, 'save-intents', `${rec.id}.json`);
    if (cur.state === 'saving' && !existsSync(intent)) this.ts.store.update(rec.id, { state: run === 'running' ? 'running' : 'paused' });
  }
}
