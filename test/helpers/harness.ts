/**
 * Integration-test harness: a real xenod on a temporary state dir and socket, real QEMU guests,
 * and cleanup of everything (daemon, QEMUs, temp dirs) even when a test fails.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { XenoClient } from '../../src/client/client.js';
import type { DomainInfo, HostInfo } from '../../src/model/api.js';
import { DomainCgroups, cgroupInstanceName } from '../../src/host/cgroups.js';
import { sanitizeInstance, tableName } from '../../src/host/network/firewall.js';
import { instanceIdFor } from '../../src/host/network/network-manager.js';
import { cgroupLayout, cmdlineOf, listNetns, processesNaming, run } from './host-probes.js';

const execFileP = promisify(execFile);

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const GUEST = {
  // the ELF kernel (PVH entry): each boot skips the bzImage's self-decompression (guest/README.md)
  kernel: path.join(REPO, 'guest/out/vmlinux'),
  ramdisk: path.join(REPO, 'guest/out/initrd.img'),
  disk: path.join(REPO, 'guest/out/disk.ext4'),
};
const XENOD = path.join(REPO, 'bin/xenod.js');
/** The V8 flags xenod runs with where it is installed (packaging/xenod.node-flags): the tests' daemons run as the installed one. */
export const XENOD_NODE_FLAGS = readFileSync(path.join(REPO, 'packaging/xenod.node-flags'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
const XENO = path.join(REPO, 'bin/xeno.cjs');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A minimal guest config in xl.cfg syntax. */
export function guestCfg(name: string, extra: Record<string, string | number> = {}): string {
  const lines = [
    `name = "${name}"`,
    `kernel = "${GUEST.kernel}"`,
    `ramdisk = "${GUEST.ramdisk}"`,
    `extra = "quiet"`,
    `memory = 128`,
    `vcpus = 1`,
  ];
  for (const [k, v] of Object.entries(extra)) lines.push(`${k} = ${typeof v === 'number' || v.startsWith('[') ? v : `"${v}"`}`);
  return lines.join('\n') + '\n';
}

export class TestDaemon {
  readonly dir: string;
  readonly stateDir: string;
  readonly socket: string;
  readonly client: XenoClient;
  private proc?: ChildProcess;
  private readonly qemuPids = new Set<number>();
  /** argv prefix to run xenod (e.g. ['ip', 'netns', 'exec', 'ns1']). */
  private wrap: string[];
  /** A network namespace of its own, made at start and removed at cleanup. */
  readonly netns?: string;
  private readonly extraArgs: string[];

  /**
   * `isolated`: run xenod in a network namespace of its own, so that whatever its guests' vifs set
   * up (bridge, taps, nftables) never touches the machine's own network.
   */
  constructor(opts: { wrap?: string[]; args?: string[]; configText?: string; isolated?: boolean } = {}) {
    if (opts.isolated) this.netns = `xt-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    this.dir = mkdtempSync(path.join(tmpdir(), 'xeno-t-'));
    this.stateDir = path.join(this.dir, 'state');
    this.socket = path.join(this.dir, 'xenod.sock');
    this.client = new XenoClient(this.socket);
    this.wrap = opts.wrap ?? [];
    this.extraArgs = [...(opts.args ?? [])];
    if (opts.configText) {
      const cfg = path.join(this.dir, 'xend-config.sxp');
      writeFileSync(cfg, opts.configText);
      this.extraArgs.push('--config', cfg);
    }
  }

  get log(): string {
    try {
      return readFileSync(path.join(this.stateDir, 'xenod.log'), 'utf8');
    } catch {
      return '';
    }
  }

  /** `env`: extra environment for this run of xenod only (e.g. XENO_TEST_CRASH_AT). */
  async start(opts: { env?: Record<string, string> } = {}): Promise<void> {
    if (this.netns && !this.wrap.length) {
      await execFileP('ip', ['netns', 'add', this.netns]);
      await execFileP('ip', ['-n', this.netns, 'link', 'set', 'lo', 'up']);
      this.wrap = ['ip', 'netns', 'exec', this.netns];
    }
    const argv = [...this.wrap, process.execPath, ...XENOD_NODE_FLAGS, XENOD, '--state-dir', this.stateDir, '--socket', this.socket, ...this.extraArgs];
    this.proc = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...opts.env } });
    let stderr = '';
    this.proc.stderr!.on('data', (d) => (stderr += String(d)));
    // a start restores the managed saves before it listens: slow on a loaded TCG host
    const deadline = Date.now() + 180_000;
    while (Date.now() < deadline) {
      if (this.proc.exitCode !== null) throw new Error(`xenod exited: ${stderr}`);
      if (await canConnect(this.socket)) return;
      await sleep(50);
    }
    throw new Error(`xenod did not come up: ${stderr}`);
  }

  /** Stop the daemon the way an admin would (SIGTERM) or brutally (SIGKILL); guests stay. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    await this.recordQemuPids();
    const exited = new Promise((r) => p.once('exit', r));
    p.kill(signal);
    await exited;
    this.proc = undefined;
  }

  /** Wait until xenod has exited by itself (e.g. killed at a XENO_TEST_CRASH_AT point). */
  async waitExit(timeoutMs = 120_000): Promise<void> {
    const p = this.proc;
    if (!p) return;
    if (p.exitCode === null && p.signalCode === null) {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`xenod did not exit within ${timeoutMs} ms`)), timeoutMs);
        p.once('exit', () => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    this.proc = undefined;
  }

  /** Pids of every QEMU whose command line names this daemon's state dir (what the host really runs). */
  qemusOnHost(): number[] {
    return this.qemuPidsFromRunDir();
  }

  /** Remember QEMU pids so cleanup can kill them even if the daemon is gone. */
  async recordQemuPids(): Promise<void> {
    try {
      const { domains } = await this.client.get<{ domains: Array<{ pid?: number }> }>('/v1/domains');
      for (const d of domains) if (d.pid) this.qemuPids.add(d.pid);
    } catch {
      /* daemon not answering */
    }
  }

  /**
   * Run the real CLI against this daemon. One that does not end by itself (a console) is
   * interrupted (SIGINT) at timeoutMs, or as soon as `until` holds for its stdout.
   */
  async xeno(args: string[], opts: { input?: string; timeoutMs?: number; cwd?: string; until?: (stdout: string) => boolean } = {}): Promise<CliResult> {
    return new Promise((resolve) => {
      const child = spawn(process.execPath, [XENO, ...args], {
        env: { ...process.env, XENO_SOCKET: this.socket },
        cwd: opts.cwd ?? REPO,
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => {
        stdout += String(d);
        if (opts.until?.(stdout)) child.kill('SIGINT');
      });
      child.stderr.on('data', (d) => (stderr += String(d)));
      const timer = setTimeout(() => child.kill('SIGINT'), opts.timeoutMs ?? 120_000);
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code: code ?? 1, stdout, stderr });
      });
      if (opts.input !== undefined) child.stdin.end(opts.input);
      else child.stdin.end();
    });
  }

  /** `xeno ARGS`, failing the test with its stderr if it does not exit 0. */
  async ok(args: string[], opts: { input?: string; cwd?: string } = {}): Promise<string> {
    const r = await this.xeno(args, opts);
    if (r.code !== 0) throw new Error(`xeno ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return r.stdout;
  }

  /** `xeno list --json`, through the real CLI. */
  async rows(): Promise<DomainInfo[]> {
    return JSON.parse(await this.ok(['list', '--json'])) as DomainInfo[];
  }

  async row(name: string): Promise<DomainInfo | undefined> {
    return (await this.rows()).find((r) => r.name === name);
  }

  /**
   * A private copy of the guest's disk image in this daemon's temp dir: no test shares an image with
   * another test, the demo or a user's guest (QEMU locks images; a read-write holder elsewhere would
   * fail this test's open).
   */
  privateDisk(name = 'disk.ext4'): string {
    const f = path.join(this.dir, name);
    copyFileSync(GUEST.disk, f);
    return f;
  }

  writeCfg(name: string, text: string): string {
    const f = path.join(this.dir, `${name}.cfg`);
    writeFileSync(f, text);
    return f;
  }

  async createGuest(name: string, extra: Record<string, string | number> = {}): Promise<number> {
    const cfg = this.writeCfg(name, guestCfg(name, extra));
    await this.ok(['create', cfg]);
    const info = await this.client.get<{ id: number; pid: number }>(`/v1/domains/${name}`);
    this.qemuPids.add(info.pid);
    return info.id;
  }

  /** The bounded console log xenod keeps for a domain. */
  consoleLog(name: string): string {
    try {
      return readFileSync(path.join(this.stateDir, 'console', `${name}.log`), 'utf8');
    } catch {
      return '';
    }
  }

  /** Wait until the console log matches (e.g. /heartbeat (\d+)/); returns the match. */
  async waitConsole(name: string, re: RegExp, timeoutMs = 60_000, from = 0): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.consoleLog(name).slice(from).match(re);
      if (m) return m;
      if (Date.now() > deadline) throw new Error(`console of ${name} never matched ${re}; tail: ${this.consoleLog(name).slice(-400)}`);
      await sleep(100);
    }
  }

  /** The latest heartbeat counter printed by the guest. */
  lastHeartbeat(name: string): number {
    const all = [...this.consoleLog(name).matchAll(/heartbeat (\d+)/g)];
    return all.length ? Number(all[all.length - 1]![1]) : 0;
  }

  /**
   * Waits until the guest has printed `n` heartbeats past `hb`. After a xenod restart, beats printed
   * while no xenod read the serial are not in the log, so waiting for one exact number could miss it.
   */
  async waitBeatsPast(name: string, hb: number, n = 2, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.lastHeartbeat(name) < hb + n) {
      if (Date.now() > deadline) throw new Error(`${name} printed no heartbeat past ${hb + n - 1} in ${timeoutMs} ms; tail: ${this.consoleLog(name).slice(-200)}`);
      await sleep(100);
    }
  }

  /** Run a command in the guest's serial shell and return what it printed between markers. */
  async guestRun(name: string, command: string, timeoutMs = 30_000): Promise<string> {
    const tag = `XM${Math.random().toString(36).slice(2, 8)}`;
    const before = this.consoleLog(name).length;
    const stream = await this.client.upgrade(`/v1/domains/${name}/console`, 'xeno-console');
    try {
      // `echo` of two halves: the echoed command line itself never contains the joined marker.
      stream.write(`echo ${tag}-""BEGIN; ${command}; echo ${tag}-""END\n`);
      const m = await this.waitConsole(name, new RegExp(`${tag}-BEGIN\\r?\\n([\\s\\S]*?)${tag}-END`), timeoutMs, before);
      return m[1]!.replace(/\r/g, '').split('\n').filter((l) => !/^heartbeat \d+$/.test(l)).join('\n');
    } finally {
      stream.destroy();
    }
  }

  /**
   * Kill everything this daemon and its guests hold, remove the temp dir, then prove nothing of this
   * daemon is left (its processes, netns, cgroups, nft tables, tagged links). Throws, listing every
   * failure, so that an `after(() => d.cleanup())` fails the test file when something leaks.
   */
  async cleanup(): Promise<void> {
    const problems: string[] = [];
    await this.recordQemuPids();
    for (const pid of this.qemuPidsFromRunDir()) this.qemuPids.add(pid);
    await this.stop('SIGKILL').catch((e: unknown) => problems.push(`stopping xenod: ${String(e)}`));
    for (const pid of this.qemuPids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ESRCH') problems.push(`killing QEMU ${pid}: ${String(e)}`);
      }
    }
    // dnsmasq and any other helper started for this daemon names a path under its temp dir
    for (const pid of processesNaming(this.dir)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone meanwhile */
      }
    }
    const cg = await this.removeCgroups();
    if (cg) problems.push(cg);
    rmSync(this.dir, { recursive: true, force: true });
    if (this.netns) {
      const r = await execFileP('ip', ['netns', 'del', this.netns]).then(() => '', (e: unknown) => String(e));
      if (r && !/No such file/.test(r)) problems.push(`removing netns ${this.netns}: ${r}`);
    }
    problems.push(...(await this.leftovers()));
    if (problems.length) throw new Error(`cleanup of the test daemon in ${this.dir}:\n  ${problems.join('\n  ')}`);
  }

  /**
   * What this daemon left behind, scoped to it: processes naming its temp dir (QEMU, dnsmasq), its
   * netns, its cgroup group, and, in the namespace it ran in, nft tables and links of its instance.
   */
  async leftovers(): Promise<string[]> {
    const out: string[] = [];
    for (let i = 0; i < 30; i++) {
      // a SIGKILLed process is reaped by PID 1 a moment later
      if (!processesNaming(this.dir).length) break;
      await sleep(100);
    }
    for (const pid of processesNaming(this.dir)) out.push(`process ${pid} left: ${cmdlineOf(pid)}`);
    if (this.netns && (await listNetns()).includes(this.netns)) out.push(`netns ${this.netns} left`);
    const layout = cgroupLayout();
    if (layout) {
      const base = new DomainCgroups(layout, cgroupInstanceName(this.stateDir)).base;
      if (existsSync(base)) out.push(`cgroup ${base} left`);
    }
    // a daemon sharing a namespace (the host's, or a wrap's): its instance's tables and links
    if (!this.netns || this.wrap[3] !== this.netns) {
      const inst = instanceIdFor(this.stateDir);
      const nsArgv = this.wrap.length && this.wrap[0] === 'ip' ? this.wrap : [];
      if (nsArgv.length === 0 || (await listNetns()).includes(nsArgv[3] ?? '')) {
        for (const family of ['inet', 'arp', 'bridge']) {
          const r = await run([...nsArgv, 'nft', 'list', 'table', family, tableName(inst)]);
          if (r.code === 0) out.push(`nft table ${family} ${tableName(inst)} left`);
        }
        const links = await run([...nsArgv, 'ip', '-j', '-d', 'link', 'show']);
        if (links.code === 0) {
          for (const l of JSON.parse(links.stdout || '[]') as Array<{ ifname: string; ifalias?: string }>) {
            if (l.ifalias && l.ifalias.includes(sanitizeInstance(inst))) out.push(`link ${l.ifname} (${l.ifalias}) left`);
          }
        }
      }
    }
    return out;
  }

  /** A daemon killed with its guests leaves their CPU cgroups: remove them (retrying while QEMUs exit). */
  private async removeCgroups(): Promise<string | undefined> {
    const layout = cgroupLayout();
    if (!layout) return undefined;
    let last: unknown;
    for (let i = 0; i < 30; i++) {
      try {
        await new DomainCgroups(layout, cgroupInstanceName(this.stateDir)).removeAll();
        return undefined;
      } catch (e) {
        last = e;
        await sleep(100);
      }
    }
    return `removing cgroups: ${String(last)}`;
  }

  /** Every process whose command line names this daemon's state dir: its QEMUs, whatever the daemon knew. */
  private qemuPidsFromRunDir(): number[] {
    const pids: number[] = [];
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
      try {
        const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
        if (argv.startsWith('qemu-system') && argv.includes(this.stateDir + '/')) pids.push(Number(entry));
      } catch {
        /* gone */
      }
    }
    return pids;
  }
}

/**
 * What one 128 MiB test guest costs the host (its maxmem and QEMU's overhead), as a throw-away
 * xenod reports it, and the host's total memory: the figures a test needs to set dom0-min-mem so
 * that exactly N guests fit.
 */
export async function measureGuestCharge(): Promise<{ charge: number; total: number }> {
  const probe = new TestDaemon();
  try {
    await probe.start();
    const h0 = await probe.client.get<HostInfo>('/v1/host');
    await probe.createGuest('probe0');
    const h1 = await probe.client.get<HostInfo>('/v1/host');
    return { charge: h0.free_memory - h1.free_memory, total: h0.total_memory };
  } finally {
    await probe.cleanup();
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A free TCP port on 127.0.0.1 between 20000 and 40000 (random, retried). */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = 20000 + Math.floor(Math.random() * 20000);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (ok) return port;
  }
  throw new Error('no free port');
}

function canConnect(sock: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.createConnection(sock);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

export { skipIf, skipOrFail, documentedSkips } from './skips.js';
export { pgrep, processesNaming } from './host-probes.js';
export { ramByteOffset } from './savefile-bytes.js';
