/**
 * A real etcd cluster (1 or 3 members of /usr/bin/etcd) on 127.0.0.1 random ports in a temp dir,
 * for the HA unit tests and the pool-scale benchmark. Members can be stopped and started again
 * from their data dirs (etcd down for everyone), killed, or made to hand over leadership.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Etcd3 } from 'etcd3';

const run = promisify(execFile);
export const ETCD_BIN = '/usr/bin/etcd';
export const ETCDCTL_BIN = '/usr/bin/etcdctl';

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

interface Member {
  name: string;
  client: string;
  peer: string;
  dir: string;
  proc?: ChildProcess;
}

export class LocalEtcd {
  private constructor(
    readonly root: string,
    private readonly members: Member[],
  ) {}

  static async start(size: 1 | 3 = 1): Promise<LocalEtcd> {
    const root = mkdtempSync(path.join(tmpdir(), 'xeno-etcd-'));
    const members: Member[] = [];
    for (let i = 0; i < size; i++) {
      members.push({ name: `m${i}`, client: `http://127.0.0.1:${await freePort()}`, peer: `http://127.0.0.1:${await freePort()}`, dir: path.join(root, `m${i}`) });
    }
    const e = new LocalEtcd(root, members);
    for (let i = 0; i < size; i++) e.spawnMember(i, true);
    await e.waitHealthy();
    return e;
  }

  get endpoints(): string[] {
    return this.members.map((m) => m.client);
  }

  get size(): number {
    return this.members.length;
  }

  endpoint(i: number): string {
    return this.members[i]!.client;
  }

  client(endpoints = this.endpoints): Etcd3 {
    return new Etcd3({ hosts: endpoints, dialTimeout: 2000 });
  }

  private spawnMember(i: number, fresh: boolean): void {
    const m = this.members[i]!;
    const cluster = this.members.map((x) => `${x.name}=${x.peer}`).join(',');
    const args = [
      '--name', m.name, '--data-dir', m.dir,
      '--listen-client-urls', m.client, '--advertise-client-urls', m.client,
      '--listen-peer-urls', m.peer, '--initial-advertise-peer-urls', m.peer,
      '--initial-cluster', cluster, '--initial-cluster-state', fresh ? 'new' : 'existing',
      '--initial-cluster-token', path.basename(this.root),
      '--heartbeat-interval', '100', '--election-timeout', '1000', '--log-level', 'error',
    ];
    m.proc = spawn(ETCD_BIN, args, { stdio: 'ignore' });
  }

  /** Stops member i (SIGTERM) and waits for its exit. */
  async stopMember(i: number, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const p = this.members[i]!.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const done = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill(signal);
    await done;
    this.members[i]!.proc = undefined;
  }

  async startMember(i: number): Promise<void> {
    this.spawnMember(i, false);
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.members.map((_, i) => this.stopMember(i)));
  }

  async startAll(): Promise<void> {
    for (let i = 0; i < this.members.length; i++) this.spawnMember(i, false);
    await this.waitHealthy();
  }

  async etcdctl(...args: string[]): Promise<string> {
    const r = await run(ETCDCTL_BIN, ['--endpoints', this.endpoints.join(','), ...args], { env: { ...process.env, ETCDCTL_API: '3' } });
    return r.stdout;
  }

  /** The member ids and which one leads, from `etcdctl endpoint status`. */
  async status(): Promise<Array<{ endpoint: string; id: string; leader: string }>> {
    // member ids are 64-bit: quoted before JSON.parse, which would round them
    const text = (await this.etcdctl('endpoint', 'status', '-w', 'json')).replace(/"(member_id|leader)":(\d+)/g, '"$1":"$2"');
    const out = JSON.parse(text) as Array<{ Endpoint: string; Status: { header: { member_id: number | string }; leader: number | string } }>;
    return out.map((s) => ({ endpoint: s.Endpoint, id: BigInt(s.Status.header.member_id).toString(16), leader: BigInt(s.Status.leader).toString(16) }));
  }

  /** Forces a leader change (etcdctl move-leader) to another member; returns the new leader's id. */
  async moveLeader(): Promise<string> {
    let last: unknown;
    // a member just restarted may still be catching up ("bad leader transferee"): try each, retry
    for (let attempt = 0; attempt < 20; attempt++) {
      const st = await this.status();
      const leader = st.find((s) => s.id === s.leader)!;
      for (const target of st.filter((s) => s.id !== s.leader)) {
        try {
          await run(ETCDCTL_BIN, ['--endpoints', leader.endpoint, 'move-leader', target.id], { env: { ...process.env, ETCDCTL_API: '3' } });
          return target.id;
        } catch (e) {
          last = e;
        }
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    throw last;
  }

  async waitHealthy(timeoutMs = 60_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      try {
        await this.etcdctl('endpoint', 'health', '--command-timeout=2s');
        const c = this.client();
        try {
          await c.put('health-probe').value('1');
        } finally {
          c.close();
        }
        return;
      } catch (e) {
        if (Date.now() > until) throw new Error(`etcd did not become healthy: ${(e as Error).message}`);
        await new Promise((r) => setTimeout(r, 300));
      }
    }
  }

  async destroy(): Promise<void> {
    await Promise.all(this.members.map((_, i) => this.stopMember(i, 'SIGKILL')));
    rmSync(this.root, { recursive: true, force: true });
  }
}
