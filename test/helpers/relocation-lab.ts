/**
 * Two hosts for relocation tests: network namespaces of our own (A 10.199.0.1, B 10.199.0.2,
 * joined by a veth pair; A also holds the near-miss addresses 10.199.0.10 and 10.199.0.20), a
 * xenod in each with its relocation server on port 8002, hand-written peers (reloc-peer.ts) run
 * inside them, nft rules to slow or cut the link, and /proc figures of a xenod. Nothing here ever
 * sends traffic outside these namespaces; teardown removes them.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { TestDaemon, pgrep, sleep } from './harness.js';

const execFileP = promisify(execFile);
const PEER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'reloc-peer.js');
export const A = '10.199.0.1';
export const B = '10.199.0.2';
export const PORT = 8002;

export class RelocationLab {
  readonly nsA: string;
  readonly nsB: string;
  readonly key: string;
  private readonly daemons: TestDaemon[] = [];
  private readonly children: ChildProcess[] = [];

  constructor(readonly dir: string) {
    const tag = `${process.pid}-${Math.random().toString(36).slice(2, 6)}`;
    this.nsA = `xr-${tag}-a`;
    this.nsB = `xr-${tag}-b`;
    this.key = path.join(dir, 'relocation.psk');
    writeFileSync(this.key, randomBytes(32).toString('hex') + '\n', { mode: 0o600 });
  }

  /**
   * `hostsA`: /etc/hosts as programs in ns A see it (ip netns exec bind-mounts /etc/netns/NS/hosts),
   * so name patterns meet a real resolver without touching the host's own.
   */
  async setup(hostsA?: string): Promise<void> {
    if (hostsA) {
      mkdirSync(`/etc/netns/${this.nsA}`, { recursive: true });
      writeFileSync(`/etc/netns/${this.nsA}/hosts`, hostsA);
    }
    for (const ns of [this.nsA, this.nsB]) {
      await execFileP('ip', ['netns', 'add', ns]);
      await execFileP('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    await execFileP('ip', ['-n', this.nsA, 'link', 'add', 'xra', 'type', 'veth', 'peer', 'name', 'xrb', 'netns', this.nsB]);
    for (const addr of [A, '10.199.0.10', '10.199.0.20']) await execFileP('ip', ['-n', this.nsA, 'addr', 'add', `${addr}/24`, 'dev', 'xra']);
    await execFileP('ip', ['-n', this.nsB, 'addr', 'add', `${B}/24`, 'dev', 'xrb']);
    await execFileP('ip', ['-n', this.nsA, 'link', 'set', 'xra', 'up']);
    await execFileP('ip', ['-n', this.nsB, 'link', 'set', 'xrb', 'up']);
  }

  async teardown(): Promise<void> {
    for (const c of this.children) c.kill('SIGKILL');
    await Promise.all(this.daemons.map((d) => d.cleanup()));
    for (const ns of [this.nsA, this.nsB]) await execFileP('ip', ['netns', 'del', ns]).catch(() => undefined);
    rmSync(`/etc/netns/${this.nsA}`, { recursive: true, force: true });
  }

  /** A xenod in `ns` with its relocation server on *:8002 (the namespace is its whole world). */
  async daemon(ns: string, extra: string[] = []): Promise<TestDaemon> {
    const cfg = ['(xend-relocation-server yes)', `(xend-relocation-port ${PORT})`, `(xeno-relocation-key-file '${this.key}')`, ...extra].join('\n') + '\n';
    const d = new TestDaemon({ wrap: ['ip', 'netns', 'exec', ns], configText: cfg });
    this.daemons.push(d);
    await d.start();
    return d;
  }

  /** Run a hand-written peer to its end; its JSON report. */
  async peer<T = Record<string, unknown>>(ns: string, mode: string, args: Record<string, unknown>): Promise<T> {
    const { stdout } = await execFileP('ip', ['netns', 'exec', ns, process.execPath, PEER, mode, JSON.stringify(args)], { maxBuffer: 1 << 20, timeout: 120_000 });
    return JSON.parse(stdout.trim().split('\n').pop()!) as T;
  }

  /** Start a long-running peer (relay, fake target); resolves once it listens; `lines` grows. */
  async spawnPeer(ns: string, mode: string, args: Record<string, unknown>): Promise<{ child: ChildProcess; lines: string[] }> {
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, PEER, mode, JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'inherit'] });
    this.children.push(child);
    const lines: string[] = [];
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => lines.push(...d.split('\n').filter(Boolean)));
    for (let i = 0; i < 200 && !lines.some((l) => l.includes('listening')); i++) await sleep(50);
    return { child, lines };
  }

  /** Start a long-running command in `ns` (e.g. tcpdump); killed at teardown if still there. */
  spawnIn(ns: string, argv: string[]): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', ns, ...argv], { stdio: 'ignore' });
    this.children.push(child);
    return child;
  }

  /** Replace the nft table `xr` in ns A (empty rules: the link is whole again). */
  async link(rules: 'whole' | 'slow' | 'cut'): Promise<void> {
    await execFileP('ip', ['netns', 'exec', this.nsA, 'nft', 'delete', 'table', 'inet', 'xr']).catch(() => undefined);
    if (rules === 'whole') return;
    // slow: QEMU's stream (any port but the control channel's) limited to ~2 MB/s, so a 128 MiB
    // guest's migration lasts long enough to act during it; cut: 100 % loss both ways.
    const stream = `tcp dport != ${PORT} tcp sport != ${PORT} limit rate over 2 mbytes/second drop`;
    const out = rules === 'slow' ? `ip daddr ${B} ${stream}` : `ip daddr ${B} drop`;
    const inp = rules === 'slow' ? `ip saddr ${B} ${stream}` : `ip saddr ${B} drop`;
    const chain = (name: string, hook: string, rule: string) => ` chain ${name} {\n  type filter hook ${hook} priority 0;\n  ${rule}\n }\n`;
    const script = `table inet xr {\n${chain('out', 'output', out)}${chain('in', 'input', inp)}}\n`;
    const f = path.join(this.dir, 'xr.nft');
    writeFileSync(f, script);
    await execFileP('ip', ['netns', 'exec', this.nsA, 'nft', '-f', f]);
  }
}

/** The xenod process of a test daemon (its argv names its state dir). */
export async function xenodPid(d: TestDaemon): Promise<number> {
  const pids = await pgrep(`state-dir ${d.stateDir} --socket`);
  if (pids.length !== 1) throw new Error(`expected one xenod for ${d.stateDir}, found ${pids.join(',')}`);
  return pids[0]!;
}

export function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

export function rssKb(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
}

/** Poll until `fn` is true (or throw after timeoutMs with `what`). */
export async function until(what: string, fn: () => Promise<boolean> | boolean, timeoutMs = 60_000, stepMs = 200): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await sleep(stepMs);
  }
}
