/**
 * The hosts' direct word to each other about etcd, outside etcd: every host sends each known
 * member a small signed UDP datagram every `intervalMs` saying how long ago its own last
 * successful lease renewal was. The fence guard (fence.ts) reads it to tell "I am cut off" (I
 * hear nobody, or somebody says etcd answers them) from "etcd is down for everyone" (every other
 * member says it cannot renew either), which a host alone cannot tell apart.
 *
 * Datagrams carry an HMAC-SHA256 over the body with the pool's shared witness key, so nobody off
 * the pool can talk a host out of fencing; a report older than `staleMs` counts as silence.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { monoMs } from './clock.js';

export interface WitnessPeer {
  host: string;
  address: string;
  port: number;
}

export interface PeerReport {
  host: string;
  /** The peer's own renewal age when it sent the report (ms); -1 = it has no lease at all. */
  renewAgeMs: number;
  /** Our monotonic time when it arrived. */
  heardAt: number;
}

interface Body {
  pool: string;
  host: string;
  renewAgeMs: number;
  /** A random id of the sender's run and a counter: a replayed datagram is refused. */
  boot: string;
  seq: number;
}

const MAX_DATAGRAM = 1024;

export interface WitnessOptions {
  pool: string;
  host: string;
  key: Buffer;
  /** Where to listen (the host's pool address) and on which UDP port (0 = any, for tests). */
  bind: { address: string; port: number };
  intervalMs?: number;
  /** This host's current renewal age (ms), read at each send. */
  renewAge: () => number;
}

export class Witness {
  private sock?: Socket;
  private timer?: NodeJS.Timeout;
  private seq = 0;
  private readonly boot = randomBytes(8).toString('hex');
  private peers: WitnessPeer[] = [];
  private readonly reports = new Map<string, PeerReport>();
  private lastSeq = new Map<string, number>();

  constructor(private readonly opts: WitnessOptions) {}

  /** Starts listening; resolves with the bound port. */
  async start(): Promise<number> {
    const sock = createSocket({ type: 'udp4' });
    this.sock = sock;
    sock.on('message', (msg) => this.receive(msg));
    sock.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(this.opts.bind.port, this.opts.bind.address, () => resolve());
    });
    this.timer = setInterval(() => this.sendAll(), this.opts.intervalMs ?? 300);
    return sock.address().port;
  }

  /** The members to talk to (the pool's members/ list, cached: it must work while etcd is down). */
  setPeers(peers: WitnessPeer[]): void {
    this.peers = peers.filter((p) => p.host !== this.opts.host);
  }

  peerHosts(): string[] {
    return this.peers.map((p) => p.host);
  }

  /** The latest report of each peer heard from (callers judge staleness by heardAt). */
  report(host: string): PeerReport | undefined {
    return this.reports.get(host);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.sock?.close();
    this.sock = undefined;
  }

  private sign(body: string): string {
    return createHmac('sha256', this.opts.key).update(body).digest('hex');
  }

  private sendAll(): void {
    const sock = this.sock;
    if (!sock) return;
    const body = JSON.stringify({ pool: this.opts.pool, host: this.opts.host, renewAgeMs: Math.round(this.opts.renewAge()), boot: this.boot, seq: ++this.seq } satisfies Body);
    const msg = Buffer.from(JSON.stringify({ body, mac: this.sign(body) }));
    for (const p of this.peers) sock.send(msg, p.port, p.address, () => undefined);
  }

  private receive(msg: Buffer): void {
    if (msg.length > MAX_DATAGRAM) return;
    try {
      const outer = JSON.parse(msg.toString('utf8')) as { body?: unknown; mac?: unknown };
      if (typeof outer.body !== 'string' || typeof outer.mac !== 'string') return;
      const want = Buffer.from(this.sign(outer.body), 'hex');
      const got = Buffer.from(outer.mac, 'hex');
      if (got.length !== want.length || !timingSafeEqual(got, want)) return;
      const b = JSON.parse(outer.body) as Body;
      if (b.pool !== this.opts.pool || typeof b.host !== 'string' || !Number.isInteger(b.renewAgeMs) || !Number.isInteger(b.seq)) return;
      if (!this.peers.some((p) => p.host === b.host)) return;
      // a replayed (older) datagram says nothing new
      const run = `${b.host}/${String(b.boot)}`;
      if ((this.lastSeq.get(run) ?? 0) >= b.seq) return;
      this.lastSeq.set(run, b.seq);
      this.reports.set(b.host, { host: b.host, renewAgeMs: b.renewAgeMs, heardAt: monoMs() });
    } catch {
      // not ours: ignored
    }
  }
}
