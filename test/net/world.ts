/**
 * A private network world for one test: a "host" namespace (where xenod or the NetworkManager
 * acts, its physical NIC a veth named eth0) and an "outside" namespace at the veth's other end
 * (out0). Only addresses inside these namespaces are used; destroy() removes both namespaces (and
 * with them every device inside) and kills every process started through the world.
 *
 *   outside 192.168.100.2/24 (out0) <--veth--> (eth0) 192.168.100.1/24 host, default via .2
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

export const HOST_IP = '192.168.100.1';
export const OUTSIDE_IP = '192.168.100.2';
export const PREFIX = 24;

let counter = 0;

export async function sh(argv: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: opts.timeoutMs ?? 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(opts.input ?? '');
  });
}

export async function must(argv: string[], opts: { input?: string } = {}): Promise<string> {
  const r = await sh(argv, opts);
  if (r.code !== 0) throw new Error(`${argv.join(' ')} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

export interface TcpResult {
  from: string;
  bytes: number;
  ms: number;
}

/** A TCP server in a namespace that reports each connection (peer, bytes, duration) as JSON lines. */
export class TcpServer {
  private readonly results: TcpResult[] = [];
  private waiters: Array<() => void> = [];

  constructor(
    readonly child: ChildProcess,
    readonly port: number,
  ) {
    createInterface({ input: child.stdout! }).on('line', (l) => {
      try {
        const m = JSON.parse(l) as TcpResult;
        if (typeof m.bytes === 'number') this.results.push(m);
      } catch {
        /* not ours */
      }
      for (const w of this.waiters.splice(0)) w();
    });
  }

  /** Waits for the n-th connection's report (1-based). */
  async result(n: number, timeoutMs: number): Promise<TcpResult> {
    const deadline = Date.now() + timeoutMs;
    while (this.results.length < n) {
      if (Date.now() > deadline) throw new Error(`no TCP connection #${n} on port ${this.port} within ${timeoutMs} ms`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 200);
      });
    }
    return this.results[n - 1]!;
  }

  get count(): number {
    return this.results.length;
  }
}

/**
 * Node code for the server: greets the peer with the address it sees (`from A.B.C.D`), counts what
 * it receives, and closes after `expect` bytes (or at the peer's end, or 500 ms of silence once
 * something came).
 */
const SERVER_JS = `
const net = require('node:net');
const [port, expect] = process.argv.slice(1).map(Number);
net.createServer((s) => {
  const t0 = Date.now(); let bytes = 0; let done = false; let idle;
  const from = s.remoteAddress.replace(/^::ffff:/, '');
  const finish = () => { if (done) return; done = true; clearTimeout(idle);
    console.log(JSON.stringify({ from, bytes, ms: Date.now() - t0 })); s.destroy(); };
  s.write('from ' + from + '\\n');
  s.on('data', (d) => { bytes += d.length; clearTimeout(idle);
    if (expect > 0 && bytes >= expect) finish(); else idle = setTimeout(finish, expect > 0 ? 5000 : 500); });
  s.on('end', finish); s.on('error', finish);
}).listen(port, () => console.log(JSON.stringify({ ready: port })));
`;

export class NetWorld {
  readonly host: string;
  readonly outside: string;
  readonly dir: string;
  private readonly procs = new Set<ChildProcess>();
  private readonly pids = new Set<number>();

  private constructor(tag: string) {
    const id = `${process.pid % 100000}${++counter}`;
    this.host = `xh${tag}${id}`;
    this.outside = `xo${tag}${id}`;
    this.dir = mkdtempSync(path.join(tmpdir(), `xn-${tag}-`));
  }

  static async create(tag: string, opts: { hostAddress?: boolean } = {}): Promise<NetWorld> {
    const w = new NetWorld(tag);
    try {
      await must(['ip', 'netns', 'add', w.host]);
      await must(['ip', 'netns', 'add', w.outside]);
      for (const ns of [w.host, w.outside]) await must(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
      await must(['ip', '-n', w.host, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'out0', 'netns', w.outside]);
      await must(['ip', '-n', w.outside, 'addr', 'add', `${OUTSIDE_IP}/${PREFIX}`, 'dev', 'out0']);
      await must(['ip', '-n', w.outside, 'link', 'set', 'out0', 'up']);
      await must(['ip', '-n', w.host, 'link', 'set', 'eth0', 'up']);
      if (opts.hostAddress !== false) {
        await must(['ip', '-n', w.host, 'addr', 'add', `${HOST_IP}/${PREFIX}`, 'brd', '+', 'dev', 'eth0']);
        await must(['ip', '-n', w.host, 'route', 'add', 'default', 'via', OUTSIDE_IP, 'dev', 'eth0']);
      }
    } catch (e) {
      await w.destroy();
      throw e;
    }
    return w;
  }

  /** argv run inside a namespace. */
  in(ns: string, argv: string[]): string[] {
    return ['ip', 'netns', 'exec', ns, ...argv];
  }

  run(ns: string, argv: string[], opts: { input?: string; timeoutMs?: number } = {}) {
    return sh(this.in(ns, argv), opts);
  }

  /** Starts a long-running process; destroy() kills it. */
  spawn(argv: string[], opts: { stdout?: 'pipe' | 'ignore' } = {}): ChildProcess {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', opts.stdout ?? 'ignore', 'ignore'] });
    this.procs.add(child);
    child.once('exit', () => this.procs.delete(child));
    return child;
  }

  /** Registers a pid to kill at destroy (QEMU started elsewhere). */
  track(pid: number): void {
    this.pids.add(pid);
  }

  async tcpServer(ns: string, port: number, expectBytes = 0): Promise<TcpServer> {
    const child = this.spawn(this.in(ns, [process.execPath, '-e', SERVER_JS, String(port), String(expectBytes)]), { stdout: 'pipe' });
    const ready = new Promise<void>((resolve, reject) => {
      const rl = createInterface({ input: child.stdout! });
      rl.on('line', (l) => {
        if (l.includes('"ready"')) resolve();
      });
      child.once('exit', () => reject(new Error('TCP server exited')));
      setTimeout(() => reject(new Error('TCP server did not start')), 10_000);
    });
    const server = new TcpServer(child, port);
    await ready;
    return server;
  }

  /** Connects from a namespace and returns what the peer sent (empty string when it cannot). */
  async tcpFetch(ns: string, ip: string, port: number, timeoutMs = 3000, opts: { firstLine?: boolean } = {}): Promise<string | null> {
    // firstLine: done at the first full line (a server's banner), not when the server closes.
    const js = `
const s = require('node:net').connect({ host: process.argv[1], port: Number(process.argv[2]) });
let out = ''; const t = setTimeout(() => { console.log(JSON.stringify({ ok: false, out })); process.exit(0); }, ${timeoutMs});
s.on('data', (d) => { out += d; if (${opts.firstLine === true} && out.includes('\\n')) { clearTimeout(t); console.log(JSON.stringify({ ok: true, out })); process.exit(0); } });
s.on('error', () => { clearTimeout(t); console.log(JSON.stringify({ ok: false, out })); process.exit(0); });
s.on('close', () => { clearTimeout(t); console.log(JSON.stringify({ ok: true, out })); process.exit(0); });
`;
    const r = await this.run(ns, [process.execPath, '-e', js, ip, String(port)], { timeoutMs: timeoutMs + 5000 });
    const m = JSON.parse(r.stdout.trim().split('\n').pop() || '{"ok":false}') as { ok: boolean; out: string };
    return m.ok || m.out ? m.out : null;
  }

  /** Counts ICMP echo requests reaching a namespace (an nft counter installed there). */
  async installIcmpCounter(ns: string): Promise<void> {
    await must(this.in(ns, ['nft', '-f', '-']), {
      input: 'table inet probe {\n chain in {\n type filter hook input priority -200;\n icmp type echo-request counter\n }\n}\n',
    });
  }

  async icmpCount(ns: string): Promise<number> {
    const out = await must(this.in(ns, ['nft', 'list', 'chain', 'inet', 'probe', 'in']));
    const m = /counter packets (\d+)/.exec(out);
    return m ? Number(m[1]) : 0;
  }

  async ping(ns: string, ip: string, count = 2): Promise<boolean> {
    return (await this.run(ns, ['busybox', 'ping', '-c', String(count), '-W', '2', ip], { timeoutMs: 15_000 })).code === 0;
  }

  /** The host namespace's network state as text: links, addresses, routes, proxy entries, nftables. */
  async hostDump(): Promise<string> {
    const parts = await Promise.all([
      this.run(this.host, ['ip', '-br', 'link']),
      this.run(this.host, ['ip', '-br', '-4', 'addr']),
      this.run(this.host, ['ip', '-4', 'route']),
      this.run(this.host, ['ip', '-4', 'neigh', 'show', 'proxy']),
      this.run(this.host, ['nft', 'list', 'ruleset']),
    ]);
    return parts.map((p) => p.stdout).join('\n');
  }

  /** Pids and command lines of the processes running in a namespace. */
  async processList(ns: string): Promise<Array<{ pid: number; cmdline: string }>> {
    const r = await sh(['ip', 'netns', 'pids', ns]);
    const out: Array<{ pid: number; cmdline: string }> = [];
    for (const pid of r.stdout.split('\n').filter(Boolean).map(Number)) {
      try {
        out.push({ pid, cmdline: readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim() });
      } catch {
        /* gone */
      }
    }
    return out.filter((p) => p.cmdline);
  }

  /** Command lines of the processes running in a namespace. */
  async processes(ns: string): Promise<string[]> {
    const r = await sh(['ip', 'netns', 'pids', ns]);
    const out: string[] = [];
    for (const pid of r.stdout.split('\n').filter(Boolean)) {
      try {
        out.push(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim());
      } catch {
        /* gone */
      }
    }
    return out.filter(Boolean);
  }

  async destroy(): Promise<void> {
    for (const p of this.procs) p.kill('SIGKILL');
    for (const pid of this.pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    // Whatever still runs inside the namespaces (QEMU, dnsmasq, xenod) was started by this test.
    for (const ns of [this.host, this.outside]) {
      const r = await sh(['ip', 'netns', 'pids', ns]);
      for (const pid of r.stdout.split('\n').filter(Boolean).map(Number)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
    await new Promise((r) => setTimeout(r, 200));
    for (const ns of [this.host, this.outside]) await sh(['ip', 'netns', 'del', ns]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
