/**
 * One QEMU process, launched or adopted. We learn of its end from QMP (SHUTDOWN events, the socket
 * closing) and /proc, never by waiting for the pid to be reaped: an adopted QEMU is not our child,
 * and init reaps orphans late.
 */
import { EventEmitter } from 'node:events';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { XenoError } from '../../common/errors.js';
import { processGone, waitProcessGone } from '../../host/proc.js';
import type { GuestStopReason, VcpuThread, Vm, VmRunState } from '../backend.js';
import type { QmpClient, QmpEvent } from './qmp.js';
import { BalloonCache } from './balloon-cache.js';

export class QemuVm extends EventEmitter implements Vm {
  private gone = false;
  private readonly exitPromise: Promise<void>;
  exitStatus?: string;
  private readonly balloon = new BalloonCache((t) => this.command<{ actual: number }>('query-balloon', undefined, t));

  constructor(
    readonly pid: number,
    readonly runDir: string,
    private readonly qmp: QmpClient,
    child?: ChildProcess,
    readonly spawnedAt?: number,
  ) {
    super();
    qmp.on('event', (e: QmpEvent) => this.onEvent(e));
    child?.once('exit', (code, signal) => (this.exitStatus = signal ? `killed by ${signal}` : `exit code ${code}`));
    this.exitPromise = new Promise<void>((resolve) => {
      const done = () => {
        if (this.gone) return;
        this.gone = true;
        resolve();
        this.emit('exit');
      };
      child?.once('exit', done);
      // QMP closing means QEMU exited or is exiting; confirm from /proc.
      qmp.once('close', () => {
        if (this.detached) return;
        // Our own child: give its exit status a moment to arrive, for the event log (how it ended).
        void waitProcessGone(pid, 30_000).then(() => (child && this.exitStatus === undefined ? this.childExit(child, 2000) : undefined)).then(done);
      });
      if (processGone(pid)) done();
    });
  }

  private detached = false;

  private childExit(child: ChildProcess, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      child.once('exit', () => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  get exited(): boolean {
    return this.gone;
  }

  private onEvent(e: QmpEvent): void {
    this.balloon.onEvent(e);
    this.emit('qmp-event', e);
    if (e.event === 'SHUTDOWN') {
      const reason = String(e.data.reason ?? '');
      if (reason === 'guest-shutdown') this.emit('guest-stop', 'poweroff' satisfies GuestStopReason);
      else if (reason === 'guest-reset') this.emit('guest-stop', 'reboot' satisfies GuestStopReason);
      else if (reason === 'guest-panic') this.emit('guest-stop', 'crash' satisfies GuestStopReason);
    } else if (e.event === 'GUEST_PANICKED') {
      this.emit('guest-stop', 'crash' satisfies GuestStopReason);
    }
  }

  command<T = unknown>(cmd: string, args?: Record<string, unknown>, timeoutMs?: number): Promise<T> {
    this.balloon.onCommand(cmd);
    if (cmd !== 'query-balloon') return this.qmp.execute<T>(cmd, args, timeoutMs);
    const keep = this.balloon.expectAnswer();
    return this.qmp.execute<T>(cmd, args, timeoutMs).then((b) => {
      keep((b as { actual: number }).actual);
      return b;
    });
  }

  balloonActual(timeoutMs = 2000): Promise<number | undefined> {
    return this.gone ? Promise.resolve(undefined) : this.balloon.read(timeoutMs);
  }

  async runState(): Promise<VmRunState> {
    const s = await this.qmp.execute<{ status: string }>('query-status');
    switch (s.status) {
      case 'running':
      case 'paused':
      case 'shutdown':
      case 'inmigrate':
      case 'postmigrate':
        return s.status;
      case 'guest-panicked':
        return 'panicked';
      default:
        return 'other';
    }
  }

  async stopReason(): Promise<GuestStopReason | null> {
    const run = await this.runState();
    if (run === 'panicked') return 'crash';
    if (run !== 'shutdown') return null;
    // ShutdownCause 6 = GUEST_SHUTDOWN (ACPI poweroff); a guest reset under reboot=shutdown sets the
    // request without this trace call (see argv.ts).
    return /qemu_system_shutdown_request reason=6\b/.test(readLog(path.join(this.runDir, 'qemu.log'))) ? 'poweroff' : 'reboot';
  }

  async pause(): Promise<void> {
    await this.qmp.execute('stop');
  }

  async resume(): Promise<void> {
    await this.qmp.execute('cont');
  }

  async powerdown(): Promise<void> {
    await this.qmp.execute('system_powerdown');
  }

  /**
   * A real reset. QEMU runs with reboot=shutdown (so xenod decides what a guest reboot means), which
   * would turn system_reset into a shutdown too: switch the action for the reset, and wait for the
   * RESET event (system_reset is only queued) before anything else, such as cont.
   */
  async reset(): Promise<void> {
    await this.qmp.execute('set-action', { reboot: 'reset' });
    try {
      const done = this.qmp.waitEvent('RESET', 10_000);
      await this.qmp.execute('system_reset');
      await done;
    } finally {
      await this.qmp.execute('set-action', { reboot: 'shutdown' });
    }
  }

  async vcpuThreads(): Promise<VcpuThread[]> {
    const cpus = await this.qmp.execute<Array<{ 'cpu-index': number; 'thread-id': number }>>('query-cpus-fast');
    return cpus.map((c) => ({ index: c['cpu-index'], threadId: c['thread-id'] }));
  }

  async kill(graceMs = 5000): Promise<void> {
    if (this.gone) return;
    try {
      await this.qmp.execute('quit', undefined, graceMs);
    } catch {
      // QEMU may close the socket before answering; the exit check below decides.
    }
    try {
      await this.waitExit(graceMs);
    } catch {
      try {
        process.kill(this.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
      if (!(await waitProcessGone(this.pid, 10_000))) {
        throw new XenoError('QEMU_ERROR', `QEMU pid ${this.pid} did not exit after SIGKILL`);
      }
      this.gone = true;
      this.emit('exit');
    }
  }

  waitExit(timeoutMs = 30_000): Promise<void> {
    if (this.gone) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new XenoError('TIMEOUT', `QEMU pid ${this.pid} still running after ${timeoutMs} ms`)), timeoutMs);
      void this.exitPromise.then(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  detach(): void {
    this.detached = true;
    this.qmp.close();
  }
}

function readLog(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}
