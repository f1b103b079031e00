/**
 * The NAT mode's DHCP server: one dnsmasq per xenod instance (Debian's dnsmasq-base), DHCP only
 * (port=0: no DNS), serving exactly the NAT vifs' interfaces and only the guests it is told about
 * (static ranges + one dhcp-host per vif), so it never answers anything on the uplink.
 *
 * Its config, pid and lease files live in the instance's network state directory. It runs in its
 * own session (a daemon restart leaves it running, like the guests), is re-adopted by pid (checked
 * against its command line), restarted when the set of NAT vifs changes (dnsmasq re-reads its
 * interface list only at start), and watched: if it dies while it should run, it is started again.
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { XenoError } from '../../common/errors.js';
import { processCmdline, processGone, waitProcessGone } from '../proc.js';
import { nsArgv, type NetCtx } from './ip.js';
import { ipToInt, netmask } from './ipv4.js';

export interface DhcpEntry {
  ifname: string;
  mac: string;
  ip: string;
  /** Network address and prefix of the vif's subnet. */
  network: string;
  prefix: number;
}

export class Dnsmasq {
  readonly confFile: string;
  readonly pidFile: string;
  readonly leaseFile: string;
  readonly logFile: string;
  private timer?: NodeJS.Timeout;
  private wanted = false;
  private starting?: Promise<void>;

  constructor(
    private readonly ctx: NetCtx,
    readonly dir: string,
    private readonly log?: Logger,
    private readonly binary = 'dnsmasq',
  ) {
    this.confFile = path.join(dir, 'dnsmasq.conf');
    this.pidFile = path.join(dir, 'dnsmasq.pid');
    this.leaseFile = path.join(dir, 'dnsmasq.leases');
    this.logFile = path.join(dir, 'dnsmasq.log');
  }

  static config(entries: DhcpEntry[], leaseFile: string): string {
    const lines = [
      '# Written by xenod: the DHCP server of its NAT vifs. Regenerated on every change; do not edit.',
      'port=0',
      'bind-dynamic',
      'no-resolv',
      'no-hosts',
      'dhcp-authoritative',
      'dhcp-no-override',
      `dhcp-leasefile=${leaseFile}`,
      'pid-file=',
    ];
    const sorted = [...entries].sort((a, b) => ipToInt(a.ip) - ipToInt(b.ip));
    for (const e of sorted) lines.push(`interface=${e.ifname}`);
    for (const e of sorted) {
      lines.push(`dhcp-range=set:${e.ifname},${e.network},static,${netmask(e.prefix)},12h`);
      lines.push(`dhcp-host=${e.mac},${e.ip},12h`);
    }
    return lines.join('\n') + '\n';
  }

  /** The running dnsmasq's pid, if the pid file names a live dnsmasq reading our config. */
  pid(): number | undefined {
    let pid: number;
    try {
      pid = Number(readFileSync(this.pidFile, 'utf8').trim());
    } catch {
      return undefined;
    }
    if (!Number.isInteger(pid) || pid <= 0 || processGone(pid)) return undefined;
    if (!processCmdline(pid).includes(`--conf-file=${this.confFile}`)) return undefined;
    return pid;
  }

  /**
   * Makes dnsmasq serve exactly `entries`: stopped when there are none, (re)started when they
   * changed or it is not running, left alone otherwise.
   */
  async sync(entries: DhcpEntry[]): Promise<void> {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const conf = Dnsmasq.config(entries, this.leaseFile);
    let current = '';
    try {
      current = readFileSync(this.confFile, 'utf8');
    } catch {
      /* none yet */
    }
    const running = this.pid();
    this.wanted = entries.length > 0;
    if (!this.wanted) {
      await this.stop();
      rmSync(this.confFile, { force: true });
      rmSync(this.leaseFile, { force: true });
      return;
    }
    if (running && current === conf) return;
    if (running) await this.kill(running);
    writeFileSync(this.confFile, conf, { mode: 0o600 });
    this.pruneLeases(entries);
    await this.start();
  }

  /** Drops leases of guests that are gone (dnsmasq is not running while this runs). */
  private pruneLeases(entries: DhcpEntry[]): void {
    let text: string;
    try {
      text = readFileSync(this.leaseFile, 'utf8');
    } catch {
      return;
    }
    const macs = new Set(entries.map((e) => e.mac.toLowerCase()));
    const kept = text.split('\n').filter((l) => {
      const f = l.split(' ');
      return f.length >= 3 && macs.has(f[1]!.toLowerCase());
    });
    writeFileSync(this.leaseFile, kept.length ? kept.join('\n') + '\n' : '', { mode: 0o600 });
  }

  private start(): Promise<void> {
    this.starting ??= this.doStart().finally(() => (this.starting = undefined));
    return this.starting;
  }

  private async doStart(): Promise<void> {
    const argv = nsArgv([this.binary, `--conf-file=${this.confFile}`, '--keep-in-foreground'], this.ctx.netns);
    const logFd = openSync(this.logFile, 'a');
    const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ['ignore', logFd, logFd] });
    closeSync(logFd);
    child.unref();
    if (child.pid === undefined) throw new XenoError('HOST_ERROR', `cannot start ${this.binary}`);
    let exited: number | null | undefined;
    child.once('exit', (code) => (exited = code));
    child.once('error', () => (exited = -1));
    writeFileSync(this.pidFile, `${child.pid}\n`);
    // dnsmasq checks its config and binds before it settles; an early exit is a config/bind error.
    const deadline = Date.now() + 1500;
    while (Date.now() < deadline) {
      if (exited !== undefined) break;
      if (this.pid() && this.bound()) return;
      await new Promise((r) => setTimeout(r, 20));
    }
    if (exited !== undefined) {
      rmSync(this.pidFile, { force: true });
      throw new XenoError('HOST_ERROR', `dnsmasq exited at start (code ${exited}): ${tail(this.logFile)}`);
    }
  }

  /** dnsmasq has its DHCP socket (a best-effort readiness check through /proc/net/udp). */
  private bound(): boolean {
    const pid = this.pid();
    if (!pid) return false;
    try {
      const udp = readFileSync(`/proc/${pid}/net/udp`, 'utf8');
      return /:0043 /.test(udp);
    } catch {
      return true;
    }
  }

  private async kill(pid: number): Promise<void> {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      return;
    }
    if (!(await waitProcessGone(pid, 3000))) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
      await waitProcessGone(pid, 3000);
    }
  }

  async stop(): Promise<void> {
    this.wanted = false;
    const pid = this.pid();
    if (pid) await this.kill(pid);
    rmSync(this.pidFile, { force: true });
  }

  /** Restart dnsmasq if it died while it should be running (checked every `everyMs`). */
  supervise(everyMs = 2000): void {
    if (this.timer) return;
    this.wanted = existsConf(this.confFile);
    this.timer = setInterval(() => {
      if (!this.wanted || this.starting || this.pid()) return;
      this.log?.warn({ conf: this.confFile }, 'dnsmasq is not running: restarting it');
      this.start().catch((e: unknown) => this.log?.error({ err: e }, 'cannot restart dnsmasq'));
    }, everyMs);
    this.timer.unref();
  }

  unsupervise(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

function existsConf(file: string): boolean {
  try {
    readFileSync(file);
    return true;
  } catch {
    return false;
  }
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-3).join(' | ');
  } catch {
    return '';
  }
}
