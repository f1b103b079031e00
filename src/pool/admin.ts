/**
 * Making a pool and giving hosts to it (xeno pool-create / pool-join): files in a pool directory
 * kept by the administrator (DIR/ca.*, DIR/root.*, and per host DIR/<host>/ with its certificate,
 * the CA, its xend-config lines and its etcd member's arguments), and the host's etcd user.
 *
 *   pool-create P --host H --address IP --dir DIR   the CA, root's and H's certificates and files
 *   (start the etcd members: DIR/<host>/etcd.args)
 *   pool-join H --address IP --dir DIR               H's files, before etcd runs: H is one of the initial
 *                                                    members (every host's etcd.args lists them all)
 *   pool-join H --address IP --dir DIR --etcd URLS   H's files (if new) and its etcd user; the first
 *                                                    join also turns the pool's etcd auth on; a host new
 *                                                    to the running cluster has its member added
 */
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import { XenoError } from '../common/errors.js';
import { DEFAULT_POOL_API_PORT } from '../model/daemon-config.js';
import { makeCert, makePoolCa, poolCa, POOL_NAME_RE, type PoolCa } from './certs.js';
import { bootstrapAuth, ETCD_ROOT_USER, etcdClient, removeUser } from './etcd.js';
import { ensureMember } from './etcd-members.js';

export interface HostFiles {
  host: string;
  dir: string;
  ca: string;
  cert: string;
  key: string;
  /** The xeno-pool-* lines for the host's xend-config.sxp. */
  sxp: string;
  /** The host's etcd member, as an argv (JSON array in DIR/<host>/etcd.args). */
  etcdArgs: string[];
  /** pool-join --etcd: whether its etcd member was added to the running cluster by this join. */
  memberAdded?: boolean;
}

export interface PoolMeta {
  pool: string;
  /** host -> address: every host given to the pool (its etcd member's peer). */
  hosts: Record<string, string>;
  apiPort: number;
}

const META = 'pool.json';

function readMeta(dir: string): PoolMeta {
  try {
    return JSON.parse(readFileSync(path.join(dir, META), 'utf8')) as PoolMeta;
  } catch {
    throw new XenoError('BAD_REQUEST', `${dir} is not a pool directory (no ${META}; xeno pool-create makes one)`);
  }
}

function checkHost(host: string, address: string): void {
  if (!POOL_NAME_RE.test(host)) throw new XenoError('BAD_REQUEST', `invalid host name "${host}" ([a-z0-9-], at most 63 characters)`);
  if (isIP(address) === 0) throw new XenoError('BAD_REQUEST', `"${address}" is not an IP address`);
}

/** The etcd client URL of each host of the pool. */
export function etcdUrls(meta: PoolMeta): string[] {
  return Object.values(meta.hosts).map((a) => `https://${a}:2379`);
}

/** A new pool: its CA, root's certificate, and the first host's files. */
export async function createPool(dir: string, pool: string, host: string, address: string, apiPort = DEFAULT_POOL_API_PORT): Promise<HostFiles> {
  checkHost(host, address);
  if (existsSync(path.join(dir, META))) throw new XenoError('BAD_REQUEST', `${dir} already holds pool ${readMeta(dir).pool}`);
  const ca = await makePoolCa(dir, pool);
  await makeCert(ca, path.join(dir, ETCD_ROOT_USER), ETCD_ROOT_USER);
  const meta: PoolMeta = { pool, hosts: {}, apiPort };
  return addHostFiles(dir, ca, meta, host, address, 'new');
}

/**
 * A host's certificate and files (made once; a second join reuses them), then, with `etcd`, its
 * etcd user (and the pool's auth, if this is the first user).
 */
export async function joinHost(dir: string, host: string, address: string, etcd?: string[]): Promise<HostFiles> {
  checkHost(host, address);
  const meta = readMeta(dir);
  const ca = poolCa(dir);
  const known = meta.hosts[host];
  if (known !== undefined && known !== address) throw new XenoError('BAD_REQUEST', `host ${host} joined with address ${known}, not ${address}`);
  if (!etcd?.length) {
    // Files only, before etcd runs: the host is one of the initial members, so every host's member
    // is started with the whole list (a member's data dir, once made, ignores these flags).
    if (known === undefined) await addHostFiles(dir, ca, meta, host, address, 'new');
    for (const h of Object.keys(meta.hosts)) writeEtcdArgs(hostFiles(dir, meta, h, 'new'));
    return hostFiles(dir, meta, host, 'new');
  }
  const root = rootClient(dir, etcd);
  try {
    // etcd already runs: a host that is not a member yet is added to the cluster (before any file
    // is made: a refusal leaves nothing), and its member is started as a newcomer with the members
    // as they are now
    if (known === undefined) refuseTakenAddress(meta, address);
    const member = await ensureMember(root, host, `https://${address}:2380`);
    let files = known === undefined ? await addHostFiles(dir, ca, meta, host, address, 'existing') : hostFiles(dir, meta, host);
    if (!member.started) {
      files = { ...files, etcdArgs: etcdMemberArgs(meta, host, path.join(files.dir, 'etcd'), files, 'existing', member.initialCluster) };
      writeEtcdArgs(files);
    }
    await bootstrapAuth(root, meta.pool, host);
    return { ...files, memberAdded: member.added };
  } finally {
    root.close();
  }
}

/** pool-eject's etcd side: the host's user is deleted (its certificate opens nothing any more). */
export async function ejectUser(dir: string, etcd: string[], host: string): Promise<void> {
  const root = rootClient(dir, etcd);
  try {
    await removeUser(root, host);
  } finally {
    root.close();
  }
}

function rootClient(dir: string, etcd: string[]) {
  return etcdClient({ endpoints: etcd, ca: path.join(dir, 'ca.crt'), cert: path.join(dir, `${ETCD_ROOT_USER}.crt`), key: path.join(dir, `${ETCD_ROOT_USER}.key`) });
}

async function addHostFiles(dir: string, ca: PoolCa, meta: PoolMeta, host: string, address: string, cluster: 'new' | 'existing'): Promise<HostFiles> {
  refuseTakenAddress(meta, address);
  const hostDir = path.join(dir, host);
  await makeCert(ca, path.join(hostDir, 'host'), host, [address]);
  copyFileSync(ca.cert, path.join(hostDir, 'ca.crt'));
  meta.hosts[host] = address;
  writeFileSync(path.join(dir, META), JSON.stringify(meta, null, 2) + '\n');
  const files = hostFiles(dir, meta, host, cluster);
  writeFileSync(path.join(hostDir, 'xend-pool.sxp'), files.sxp);
  writeEtcdArgs(files);
  return files;
}

function refuseTakenAddress(meta: PoolMeta, address: string): void {
  if (Object.values(meta.hosts).includes(address)) throw new XenoError('BAD_REQUEST', `address ${address} is already another host's`);
}

function writeEtcdArgs(files: HostFiles): void {
  writeFileSync(path.join(files.dir, 'etcd.args'), JSON.stringify(files.etcdArgs) + '\n');
}

function hostFiles(dir: string, meta: PoolMeta, host: string, cluster: 'new' | 'existing' = 'existing'): HostFiles {
  const hostDir = path.join(dir, host);
  const address = meta.hosts[host]!;
  const f = { ca: path.join(hostDir, 'ca.crt'), cert: path.join(hostDir, 'host.crt'), key: path.join(hostDir, 'host.key') };
  const sxp = [
    `(xeno-pool-name ${meta.pool})`,
    `(xeno-pool-host ${host})`,
    `(xeno-pool-etcd '${etcdUrls(meta).join(' ')}')`,
    `(xeno-pool-ca ${f.ca})`,
    `(xeno-pool-cert ${f.cert})`,
    `(xeno-pool-key ${f.key})`,
    `(xeno-pool-address ${address})`,
    `(xeno-pool-api-port ${meta.apiPort})`,
  ].join('\n') + '\n';
  return { host, dir: hostDir, ...f, sxp, etcdArgs: etcdMemberArgs(meta, host, path.join(hostDir, 'etcd'), f, cluster) };
}

/**
 * etcd's argv for a host's member: TLS for clients and peers with the pool CA, client certificates
 * required on both (the CN of a client's is its user), etcd's own default timings (heartbeat
 * 100 ms, election timeout 1 s), and pre-vote. The election timeout bounds how long etcd is without
 * a leader when the leader's host dies (a follower waits 1-2 s, randomized, before it campaigns):
 * every host's renewals wait for the new leader meanwhile, and that wait must stay well under the
 * fence time F (6 s at the default TTL). At 2.5 s (randomized up to 5 s), the lab's surviving hosts
 * went 6 s without a renewal and fenced, and the new leader's lease promotion (every lease extended
 * by the election timeout) delayed the lost host's restart too. Pre-vote (off by default in 3.4):
 * without it a member cut off from the others keeps raising its raft term, and when it comes back
 * that term makes the leader step down; the election that follows left etcd without a leader for
 * up to ~7 s for EVERY host, enough for a healthy host to fence its HA guests (docs/pool-ha.md).
 * With pre-vote a member that cannot win does not raise its term.
 */
export function etcdMemberArgs(meta: PoolMeta, host: string, dataDir: string, f: { ca: string; cert: string; key: string }, cluster: 'new' | 'existing', initialCluster?: string): string[] {
  const a = meta.hosts[host]!;
  const initial = initialCluster ?? Object.entries(meta.hosts).map(([h, ip]) => `${h}=https://${ip}:2380`).join(',');
  return [
    '--name', host, '--data-dir', dataDir,
    '--listen-client-urls', `https://${a}:2379`, '--advertise-client-urls', `https://${a}:2379`,
    '--listen-peer-urls', `https://${a}:2380`, '--initial-advertise-peer-urls', `https://${a}:2380`,
    '--initial-cluster', initial, '--initial-cluster-state', cluster, '--initial-cluster-token', `xeno-${meta.pool}`,
    '--client-cert-auth', '--trusted-ca-file', f.ca, '--cert-file', f.cert, '--key-file', f.key,
    '--peer-client-cert-auth', '--peer-trusted-ca-file', f.ca, '--peer-cert-file', f.cert, '--peer-key-file', f.key,
    '--heartbeat-interval', '100', '--election-timeout', '1000', '--pre-vote', '--logger', 'zap', '--log-outputs', 'stderr',
  ];
}

export function poolMeta(dir: string): PoolMeta {
  return readMeta(dir);
}

/** A host's files as of now (its xend-config lines name every etcd member the pool has today). */
export function currentHostFiles(dir: string, host: string): HostFiles {
  const meta = readMeta(dir);
  if (meta.hosts[host] === undefined) throw new XenoError('BAD_REQUEST', `host ${host} is not in the pool of ${dir}`);
  return hostFiles(dir, meta, host);
}
