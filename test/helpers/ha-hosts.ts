/**
 * Test support for the HA unit tests: a "host" = its own etcd client (optionally through a
 * CuttableLink), an HaAgent, and guests that are real processes (`sleep`) whose start and exit
 * times are recorded on the monotonic clock. The toolstack side (HaHostOps) is the thinnest real
 * one: start = take the disk locks in one txn, then spawn; kill = SIGKILL.

 */
import { spawn, type ChildProcess } from 'node:child_process';
import { Etcd3, type Namespace } from 'etcd3';
import type { DiskSpec } from '../../src/model/domain-config.js';
import { haClientOptions } from '../../src/pool/ha/client-options.js';
import { HaAgent, HA_PREFIX, type HaEntry, type HaHostOps } from '../../src/pool/ha/agent.js';
import { monoMs } from '../../src/pool/ha/clock.js';
import { acquireGuestLocks } from '../../src/pool/ha/disk-locks.js';
import type { WitnessPeer } from '../../src/pool/ha/witness.js';

export const POOL = 'hatest';
export const WITNESS_KEY = Buffer.from('0123456789abcdef0123456789abcdef');

export interface GuestRun {
  host: string;
  name: string;
  startedAt: number;
  exitedAt?: number;
  proc: ChildProcess;
}

/** Every guest process any test host started, in order. */
export const runs: GuestRun[] = [];

export function disksOf(name: string): DiskSpec[] {
  return [{ target: `/srv/pool/${name}.img`, format: 'raw', vdev: 'xvda', access: 'rw', devtype: 'disk' }];
}

export class TestHost {
  readonly client: Etcd3;
  readonly ns: Namespace;
  readonly agent: HaAgent;
  port = 0;
  private readonly guests = new Map<string, GuestRun>();

  constructor(
    readonly name: string,
    endpoints: string[],
    opts: { ttlSec: number; fenceMs: number; holdoffMs?: number },
  ) {
    this.client = new Etcd3({ hosts: endpoints, dialTimeout: 1000, ...haClientOptions() });
    this.ns = this.client.namespace(`/xeno/${POOL}/`);
    const ops: HaHostOps = {
      haGuests: () => [...this.guests.keys()],
      kill: (n) => this.guests.get(n)?.proc.kill('SIGKILL'),
      start: (n, mod) => this.startGuest(n, mod),
      guestInfo: async (n) => ({ name: n, memoryMiB: 64, priority: n.endsWith('hi') ? 10 : 0 }),
    };
    this.agent = new HaAgent({
      pool: POOL, host: name, ns: this.ns, ops, ttlSec: opts.ttlSec, fenceMs: opts.fenceMs, holdoffMs: opts.holdoffMs,
      witnessKey: WITNESS_KEY, witnessBind: { address: '127.0.0.1', port: 0 }, peers: [],
    });
  }

  async start(): Promise<void> {
    this.port = await this.agent.start();
    await this.publish();
  }

  /** The host record (hosts/<name>, with the lease), as the pool's membership code puts it. */
  async publish(): Promise<void> {
    await this.agent.keeper.lease().put(`hosts/${this.name}`).value(JSON.stringify({ name: this.name, memFreeKiB: 4 * 1024 * 1024 }));
  }

  setPeers(peers: WitnessPeer[]): void {
    this.agent.setPeers(peers);
  }

  running(): string[] {
    return [...this.guests.keys()];
  }

  /** Starts an HA guest here the way a first `xeno create` does: locks, running/, ha/ in one txn. */
  async create(name: string): Promise<void> {
    const cur = (await this.ns.get(HA_PREFIX + name).exec()).kvs[0];
    await this.startGuest(name, cur?.mod_revision ?? '0');
  }

  private async startGuest(name: string, entryMod: string): Promise<void> {
    const entry: HaEntry = { host: this.name, assigned: false, epoch: Date.now() };
    await acquireGuestLocks(this.ns, this.agent.keeper.lease(), {
      host: this.name, name, disks: disksOf(name), running: { host: this.name, since: Date.now() },
      extra: { key: HA_PREFIX + name, value: entry, modRevision: entryMod },
    });
    const proc = spawn('sleep', ['3600'], { stdio: 'ignore' });
    const run: GuestRun = { host: this.name, name, startedAt: monoMs(), proc };
    proc.once('exit', () => {
      run.exitedAt = monoMs();
      if (this.guests.get(name) === run) this.guests.delete(name);
    });
    this.guests.set(name, run);
    runs.push(run);
  }

  /** The host dies outright: its agent stops without revoking anything, its guests are killed. */
  async killOutright(): Promise<void> {
    for (const g of this.guests.values()) g.proc.kill('SIGKILL');
    await this.agent.stop(false);
    this.client.close();
  }

  async stop(): Promise<void> {
    for (const g of this.guests.values()) g.proc.kill('SIGKILL');
    await this.agent.stop(true).catch(() => undefined);
    this.client.close();
  }
}

export async function waitFor<T>(what: string, f: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 60_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
