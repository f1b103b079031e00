/**
 * The pool's etcd: a connection from the xeno-pool-* keys (TLS, the host's client certificate; etcd
 * runs with --client-cert-auth and auth enabled, so the certificate's CN *is* the etcd user), the
 * key layout under /xeno/<pool>/ (POOL-KEYS.md, docs/pool.md), the host's one lease, and the
 * auth bootstrap of a new pool (a role per pool granted on its prefixes, a user per host).
 */
import { Etcd3, Range, type Lease, type Namespace } from 'etcd3';
import { XenoError } from '../common/errors.js';
import type { PoolConfig } from '../model/daemon-config.js';
import { readTls } from './certs.js';
import { haClientOptions } from './ha/client-options.js';

/** The etcd user the pool commands administer with (auth's root; its certificate's CN is `root`). */
export const ETCD_ROOT_USER = 'root';

/** Everything of pool P lives under this prefix... */
export function poolPrefix(pool: string): string {
  return `/xeno/${pool}/`;
}

/** ...but etcd3's elections, which keep their keys under `election/<name>/` (name xeno/<pool>/leader). */
export function electionPrefix(pool: string): string {
  return `election/xeno/${pool}/`;
}

export function roleName(pool: string): string {
  return `xeno-pool-${pool}`;
}

/** The keys of the contract (relative to the pool's namespace). */
export const keys = {
  host: (h: string) => `hosts/${h}`,
  member: (h: string) => `members/${h}`,
  def: (n: string) => `defs/${n}`,
  running: (n: string) => `running/${n}`,
  hosts: 'hosts/',
  members: 'members/',
  defs: 'defs/',
  runningAll: 'running/',
} as const;

export interface EtcdTarget {
  endpoints: string[];
  ca: string;
  cert: string;
  key: string;
}

/** An etcd3 client over TLS with a client certificate (no password: the CN authenticates). */
export function etcdClient(t: EtcdTarget): Etcd3 {
  const tls = readTls(t);
  return new Etcd3({
    hosts: t.endpoints,
    credentials: { rootCertificate: tls.ca, certChain: tls.cert, privateKey: tls.key },
    dialTimeout: 5_000,
    // a member that is down or cut off must not stall every call: each call has a deadline
    defaultCallOptions: () => ({ deadline: Date.now() + 8_000 }),
    // a blip must not become seconds without a lease renewal (pool HA's fence clock)
    ...haClientOptions(),
  });
}

/** A pooled host's connection: the client, the pool's namespace, and the host's one lease. */
export class PoolEtcd {
  readonly client: Etcd3;
  /** Keys relative to /xeno/<pool>/. */
  readonly ns: Namespace;
  private lease?: Lease;
  private leaseSource?: () => Lease;
  private leaseLostHandlers: Array<(e: Error) => void> = [];

  constructor(readonly config: PoolConfig) {
    this.client = etcdClient({ endpoints: config.etcd, ca: config.ca, cert: config.cert, key: config.key });
    this.ns = this.client.namespace(poolPrefix(config.name));
  }

  get host(): string {
    return this.config.host;
  }

  /**
   * The host's one lease (TTL xeno-pool-lease-ttl), kept alive by etcd3's own keep-alive; what is
   * put with it (host record, running/ entries, disk locks) goes when the host stops renewing it.
   * A lost lease is replaced by a new one at the next call (the losers are told first).
   */
  hostLease(): Lease {
    if (this.leaseSource) return this.leaseSource();
    if (this.lease && !this.lease.revoked()) return this.lease;
    const lease = this.ns.lease(this.config.leaseTtl, { autoKeepAlive: true });
    lease.on('lost', (e: Error) => {
      if (this.lease === lease) this.lease = undefined;
      for (const h of this.leaseLostHandlers) h(e);
    });
    this.lease = lease;
    return lease;
  }

  /**
   * Pool HA's lease keeper takes the host's one lease over (src/pool/ha/lease-keeper.ts: it renews
   * it itself, to know when it last succeeded); hostLease() returns its lease from then on.
   */
  useLease(source: () => Lease): void {
    this.leaseSource = source;
    this.lease?.release();
    this.lease = undefined;
  }

  /** The keeper's word that the lease is gone: the handlers below are told. */
  leaseLost(e: Error): void {
    for (const h of this.leaseLostHandlers) h(e);
  }

  /** Called when the host's lease is lost (etcd unreachable past the TTL, or revoked). */
  onLeaseLost(handler: (e: Error) => void): void {
    this.leaseLostHandlers.push(handler);
  }

  async getJson<T>(key: string): Promise<T | null> {
    const v = await this.ns.get(key).string();
    return v === null ? null : (JSON.parse(v) as T);
  }

  /** Every value under a relative prefix, by the key's last part. */
  async listJson<T>(prefix: string): Promise<Map<string, T>> {
    const all = await this.ns.getAll().prefix(prefix).strings();
    const out = new Map<string, T>();
    for (const [k, v] of Object.entries(all)) out.set(k.slice(prefix.length), JSON.parse(v) as T);
    return out;
  }

  /**
   * Put `key` only if it does not exist (create revision 0), in one etcd transaction: exactly one of
   * any number of racing creators wins. True if this call created it.
   */
  async createOnly(key: string, value: unknown, lease?: Lease): Promise<boolean> {
    const put = lease ? lease.put(key).value(JSON.stringify(value)) : this.ns.put(key).value(JSON.stringify(value));
    const r = await this.ns.if(key, 'Create', '==', 0).then(put).commit();
    return r.succeeded;
  }

  /**
   * Stop keeping the lease alive and disconnect, WITHOUT revoking: xenod stopping is not the host
   * going away (its guests keep running); the lease runs out after its TTL unless a new xenod
   * comes back first.
   */
  close(): void {
    this.lease?.release();
    this.lease = undefined;
    this.client.close();
  }
}

/** The message of an etcd3 error, as the operator should read it. */
export function etcdError(e: unknown, what: string): XenoError {
  return new XenoError('HOST_ERROR', `pool etcd: ${what}: ${(e as Error).message ?? String(e)}`);
}

/**
 * A new pool's access control, as etcd's root: the pool's role (read-write on its prefixes), the
 * users `root` and `host` (cert-authenticated: no password), then auth on. Idempotent.
 */
export async function bootstrapAuth(root: Etcd3, pool: string, host: string): Promise<void> {
  const role = roleName(pool);
  const existing = new Set((await root.getRoles()).map((r) => r.name));
  if (!existing.has('root')) await root.role('root').create();
  if (!existing.has(role)) {
    await root.role(role).create();
    await root.role(role).grant([
      { permission: 'Readwrite', range: Range.prefix(poolPrefix(pool)) },
      { permission: 'Readwrite', range: Range.prefix(electionPrefix(pool)) },
    ]);
  }
  await addUser(root, ETCD_ROOT_USER, 'root');
  await addUser(root, host, role);
  await root.auth.authEnable({}).catch((e: Error) => {
    if (!/already enabled/i.test(e.message)) throw e;
  });
}

/** An etcd user with no password (its client certificate's CN authenticates it), in `role`. */
export async function addUser(root: Etcd3, name: string, role: string): Promise<void> {
  const users = new Set((await root.getUsers()).map((u) => u.name));
  if (!users.has(name)) await root.auth.userAdd({ name, password: '', options: { no_password: true } });
  await root.user(name).addRole(role);
}

/** A host's etcd user removed (pool-eject): its certificate no longer opens anything. */
export async function removeUser(root: Etcd3, name: string): Promise<void> {
  const users = new Set((await root.getUsers()).map((u) => u.name));
  if (users.has(name)) await root.user(name).delete();
}
