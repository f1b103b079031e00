/**
 * A pool of three "hosts" on one machine: three network namespaces (10.197.0.1-3) plugged into a
 * bridge in a fourth ("switch") namespace, a shared image directory, one etcd member per host (TLS
 * for clients and peers, client certificates required, auth on: a 3-member cluster) and one xenod
 * per host, run inside its namespace with the pool keys `xeno pool-create`/`pool-join` wrote.
 * Everything is made through the real CLI and removed by teardown(), even after a failure; nothing
 * here sends traffic outside these namespaces.
 *
 * A host can be killed outright (every process in its namespace), cut off the switch and plugged
 * back, and its etcd member stopped and started.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { currentHostFiles } from '../../src/pool/admin.js';
import { REPO, TestDaemon, sleep } from './harness.js';

const execFileP = promisify(execFile);
const XENO = path.join(REPO, 'bin/xeno.cjs');

export interface LabHost {
  name: string;
  ns: string;
  address: string;
  /** The switch-side end of its link (down = the host is cut off). */
  port: string;
  daemon?: TestDaemon;
  etcd?: ChildProcess;
  etcdLog: string[];
  /** Given to the pool (its etcd member and user): the lab's etcd URLs are those of these hosts. */
  joined?: boolean;
}

export interface PoolLabOptions {
  /** Extra xend-config lines for every xenod. */
  config?: string[];
  /** Extra xend-config lines for one host's xenod (by host name). */
  perHost?: Record<string, string[]>;
  /** Start the xenods (default true). */
  daemons?: boolean;
  hosts?: number;
  /** The last N hosts get their network only: joinLate() gives them to the running pool. */
  late?: number;
  pool?: string;
  /** etcd members detached, logging to DIR/HOST/etcd.log (scripts/lab-pool: they outlive the command). */
  detached?: boolean;
}

async function ip(args: string[]): Promise<void> {
  await execFileP('ip', args);
}

export class PoolLab {
  readonly dir: string;
  readonly poolDir: string;
  /** The image directory every host sees (a test's disks go here). */
  readonly images: string;
  readonly sw: string;
  readonly hosts: LabHost[] = [];
  readonly pool: string;
  private readonly tag: string;
  private readonly detached: boolean;

  constructor(opts: PoolLabOptions = {}) {
    this.detached = opts.detached ?? false;
    this.tag = `${process.pid % 100000}${Math.random().toString(36).slice(2, 5)}`;
    this.dir = mkdtempSync(path.join(tmpdir(), 'xeno-pool-'));
    this.poolDir = path.join(this.dir, 'pool');
    this.images = path.join(this.dir, 'images');
    mkdirSync(this.images);
    this.sw = `xps-${this.tag}`;
    this.pool = opts.pool ?? 'lab';
    for (let i = 1; i <= (opts.hosts ?? 3); i++) {
      this.hosts.push({ name: `host${i}`, ns: `xp${i}-${this.tag}`, address: `10.197.0.${i}`, port: `xpp${i}${this.tag}`.slice(0, 15), etcdLog: [] });
    }
  }

  host(name: string): LabHost {
    const h = this.hosts.find((x) => x.name === name);
    if (!h) throw new Error(`no lab host ${name}`);
    return h;
  }

  /** Everything up; on a failure half-way, everything made so far is removed before the throw. */
  static async up(opts: PoolLabOptions = {}): Promise<PoolLab> {
    const lab = new PoolLab(opts);
    const early = lab.hosts.slice(0, lab.hosts.length - (opts.late ?? 0));
    try {
      await lab.network();
      await lab.certificates(early);
      for (const h of early) h.joined = true;
      for (const h of early) lab.startEtcd(h);
      // the first join turns etcd's auth on: the longest
      for (const [i, h] of early.entries()) await lab.joinEtcd(h, i === 0 ? 120_000 : 60_000);
      if (opts.daemons !== false) for (const h of early) await lab.startDaemon(h, [...(opts.config ?? []), ...(opts.perHost?.[h.name] ?? [])]);
    } catch (e) {
      await lab.down().catch(() => undefined);
      throw e;
    }
    return lab;
  }

  etcdUrls(): string[] {
    return this.hosts.filter((h) => h.joined).map((h) => `https://${h.address}:2379`);
  }

  /** `pool-join --etcd` from the host's namespace, with the etcd URLs of the hosts joined so far. */
  joinEtcd(h: LabHost, timeoutMs = 60_000): Promise<string> {
    return this.cli(h.ns, ['pool-join', h.name, '--address', h.address, '--dir', this.poolDir, '--etcd', this.etcdUrls().join(',')], timeoutMs);
  }

  /** A late host given to the running pool as docs/pool.md says: pool-join --etcd (its member added), then its etcd started from its etcd.args. */
  async joinLate(h: LabHost): Promise<string> {
    const out = await this.joinEtcd(h);
    h.joined = true;
    this.startEtcd(h);
    return out;
  }

  private async network(): Promise<void> {
    await ip(['netns', 'add', this.sw]);
    await ip(['-n', this.sw, 'link', 'set', 'lo', 'up']);
    await ip(['-n', this.sw, 'link', 'add', 'br0', 'type', 'bridge']);
    await ip(['-n', this.sw, 'link', 'set', 'br0', 'up']);
    for (const h of this.hosts) {
      await ip(['netns', 'add', h.ns]);
      await ip(['-n', h.ns, 'link', 'set', 'lo', 'up']);
      await ip(['-n', h.ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', h.port, 'netns', this.sw]);
      await ip(['-n', this.sw, 'link', 'set', h.port, 'master', 'br0']);
      await ip(['-n', this.sw, 'link', 'set', h.port, 'up']);
      await ip(['-n', h.ns, 'addr', 'add', `${h.address}/24`, 'dev', 'eth0']);
      await ip(['-n', h.ns, 'link', 'set', 'eth0', 'up']);
    }
  }

  /** pool-create for host1, pool-join (certificates only: etcd is not up yet) for the others. */
  private async certificates(hosts: LabHost[]): Promise<void> {
    const [first, ...rest] = hosts;
    // As JSON, parsed: what scripts building a pool read.
    JSON.parse(await this.cli(null, ['pool-create', this.pool, '--json', '--host', first!.name, '--address', first!.address, '--dir', this.poolDir]));
    for (const h of rest) JSON.parse(await this.cli(null, ['pool-join', h.name, '--json', '--address', h.address, '--dir', this.poolDir]));
  }

  /** Run the real CLI (in a host's namespace, or outside all of them for file-only work). */
  async cli(ns: string | null, args: string[], timeoutMs = 60_000, socket?: string): Promise<string> {
    const argv = [...(ns ? ['ip', 'netns', 'exec', ns] : []), process.execPath, XENO, ...args];
    try {
      const r = await execFileP(argv[0]!, argv.slice(1), { timeout: timeoutMs, env: socket ? { ...process.env, XENO_SOCKET: socket } : process.env });
      return r.stdout;
    } catch (e) {
      const err = e as { stderr?: string; message: string };
      throw new Error(`xeno ${args.join(' ')} failed: ${err.stderr || err.message}`);
    }
  }

  startEtcd(h: LabHost): void {
    // the member's arguments as pool-create/pool-join wrote them (docs/pool.md's flow)
    const args = JSON.parse(readFileSync(path.join(this.poolDir, h.name, 'etcd.args'), 'utf8')) as string[];
    if (this.detached) {
      const log = openSync(path.join(this.poolDir, h.name, 'etcd.log'), 'a');
      spawn('ip', ['netns', 'exec', h.ns, 'etcd', ...args], { detached: true, stdio: ['ignore', log, log] }).unref();
      return;
    }
    const child = spawn('ip', ['netns', 'exec', h.ns, 'etcd', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => {
      h.etcdLog.push(d);
      if (h.etcdLog.length > 200) h.etcdLog.shift();
    });
    h.etcd = child;
  }

  async stopEtcd(h: LabHost): Promise<void> {
    const c = h.etcd;
    h.etcd = undefined;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const gone = new Promise((r) => c.once('exit', r));
    // `ip netns exec` execs etcd: the child's pid is etcd's
    c.kill('SIGKILL');
    await gone;
  }

  async startDaemon(h: LabHost, extra: string[] = []): Promise<TestDaemon> {
    const f = currentHostFiles(this.poolDir, h.name);
    const cfg = ['(xend-relocation-server yes)', '(xend-relocation-port 8002)', '(xeno-pool-lease-ttl 6)', ...extra, f.sxp].join('\n') + '\n';
    const d = h.daemon ?? new TestDaemon({ wrap: ['ip', 'netns', 'exec', h.ns], configText: cfg });
    h.daemon = d;
    await d.start();
    return d;
  }

  daemon(name: string): TestDaemon {
    const d = this.host(name).daemon;
    if (!d) throw new Error(`${name} has no xenod`);
    return d;
  }

  /** The host is gone at once: every process in its namespace (xenod, its QEMUs, etcd) SIGKILLed. */
  async killHost(h: LabHost): Promise<void> {
    await killNamespace(h.ns);
    h.etcd = undefined;
  }

  /** Pull the host's cable (its switch port down): it and the others no longer reach each other. */
  async cut(h: LabHost): Promise<void> {
    await ip(['-n', this.sw, 'link', 'set', h.port, 'down']);
  }

  async restore(h: LabHost): Promise<void> {
    await ip(['-n', this.sw, 'link', 'set', h.port, 'up']);
  }

  /** Every process in these namespaces killed, the namespaces deleted (scripts/lab-pool down). */
  static async removeNamespaces(namespaces: string[], dir: string): Promise<void> {
    for (const ns of namespaces) {
      await killNamespace(ns);
      await ip(['netns', 'del', ns]).catch(() => undefined);
    }
    rmSync(dir, { recursive: true, force: true });
  }

  /** Everything down: daemons and their guests, etcd members, namespaces, files. */
  async down(): Promise<void> {
    const problems: string[] = [];
    for (const h of this.hosts) {
      await this.stopEtcd(h).catch(() => undefined);
      if (h.daemon) await h.daemon.cleanup().catch((e: unknown) => problems.push(String(e)));
      await killNamespace(h.ns);
      await ip(['netns', 'del', h.ns]).catch(() => undefined);
    }
    await ip(['netns', 'del', this.sw]).catch(() => undefined);
    rmSync(this.dir, { recursive: true, force: true });
    if (problems.length) throw new Error(`pool lab teardown:\n${problems.join('\n')}`);
  }

  /** The last lines an etcd member wrote (for a failure's message). */
  etcdTail(h: LabHost): string {
    return h.etcdLog.join('').split('\n').slice(-20).join('\n');
  }
}

/** Every process in a namespace SIGKILLed (a host's power cut), until none is left. */
export async function killNamespace(ns: string): Promise<void> {
  for (let round = 0; round < 3; round++) {
    const r = await execFileP('ip', ['netns', 'pids', ns]).catch(() => ({ stdout: '' }));
    const pids = r.stdout.split('\n').filter(Boolean).map(Number);
    if (!pids.length) return;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    await sleep(300);
  }
}

/** Read a JSON file of the lab (e.g. a pool directory's pool.json). */
export function readJson<T>(file: string): T {
  return JSON.parse(readFileSync(file, 'utf8')) as T;
}
