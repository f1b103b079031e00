/**
 * xenod's side of the fence watchdog (fence-watchdog-main.ts): connects to the host's running
 * watchdog (`<state dir>/ha-fence.sock`), or starts one detached in its own session, and feeds it
 * every 100 ms. A restarted xenod reconnects to the same watchdog, which kept guarding meanwhile.
 */
import { spawn } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { monoNowMs, procStart, type WatchdogFeed } from './fence-watchdog-main.js';

export { monoNowMs, procStart } from './fence-watchdog-main.js';

export interface WatchdogSource {
  /** monoMs() of the send time of the last acknowledged renewal (-Infinity: none). */
  lastRenewal(): number;
  /** Milliseconds since then, in the same clock. */
  renewAge(): number;
  /** The source's clock now (monoMs). */
  now(): number;
  fenceMs: number;
  /** The HA QEMUs' pids now. */
  pids(): number[];
  /** Whether the fence rule says hold (etcd out for everyone). */
  holding(): boolean;
  /** Until when (monoMs, the source's clock) that hold stays safe without a newer check. */
  holdUntil(): number;
}

export function watchdogSocket(stateDir: string): string {
  return path.join(stateDir, 'ha-fence.sock');
}

const MAIN = fileURLToPath(new URL('./fence-watchdog-main.js', import.meta.url));

export class FenceWatchdogClient {
  private sock?: Socket;
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private connecting = false;

  constructor(
    private readonly stateDir: string,
    private readonly src: WatchdogSource,
    private readonly log: (m: string) => void,
  ) {}

  async start(): Promise<void> {
    await this.ensure();
    this.timer = setInterval(() => void this.feed(), 100);
    this.timer.unref();
  }

  /** A stop on purpose: the watchdog exits (the guests were marked held). */
  async standDown(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    const s = this.sock;
    if (!s || s.destroyed) return;
    await new Promise<void>((r) => s.end(JSON.stringify({ bye: true }) + '\n', () => r()));
    s.destroy();
  }

  /** Stops feeding and drops the connection WITHOUT standing down: what a crashed xenod leaves. */
  abandon(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.sock?.destroy();
  }

  private async ensure(): Promise<void> {
    const file = watchdogSocket(this.stateDir);
    const s = await tryConnect(file);
    if (s) {
      this.log('ha: fence watchdog running: reconnected');
      return this.attach(s);
    }
    const log = openSync(path.join(this.stateDir, 'ha-fence.out'), 'a');
    // own session, like QEMU: it must outlive a crashed xenod
    spawn(process.execPath, [MAIN, file], { detached: true, stdio: ['ignore', log, log] }).unref();
    closeSync(log);
    for (let i = 0; i < 100; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const c = await tryConnect(file);
      if (c) {
        this.log('ha: fence watchdog started');
        return this.attach(c);
      }
    }
    throw new Error(`the fence watchdog did not come up on ${file}`);
  }

  private attach(s: Socket): void {
    this.sock = s;
    s.on('error', () => undefined);
    s.on('close', () => {
      if (this.sock === s) this.sock = undefined;
    });
    void this.feed();
  }

  private async feed(): Promise<void> {
    if (this.stopped) return;
    if (!this.sock || this.sock.destroyed) {
      // the watchdog died (or was killed): start another; meanwhile xenod's own guard still fences
      this.sock = undefined;
      if (this.connecting) return;
      this.connecting = true;
      await this.ensure()
        .catch((e: Error) => this.log(`ha: fence watchdog: ${e.message}`))
        .finally(() => (this.connecting = false));
      return;
    }
    const last = this.src.lastRenewal();
    const f: WatchdogFeed = {
      // the same instant in the shared CLOCK_MONOTONIC (performance.now() has a per-process origin)
      renewedAt: Number.isFinite(last) ? monoNowMs() - this.src.renewAge() : null,
      fenceMs: this.src.fenceMs,
      pids: this.src.pids().flatMap((pid) => {
        const start = procStart(pid);
        return start ? [{ pid, start }] : [];
      }),
      hold: this.src.holding(),
      holdUntil: this.src.holding() && Number.isFinite(this.src.holdUntil()) ? monoNowMs() + (this.src.holdUntil() - this.src.now()) : null,
    };
    this.sock.write(JSON.stringify(f) + '\n');
  }
}

function tryConnect(file: string): Promise<Socket | undefined> {
  return new Promise((resolve) => {
    const s = connect(file);
    s.once('connect', () => resolve(s));
    s.once('error', () => resolve(undefined));
  });
}
