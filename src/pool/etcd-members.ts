/**
 * A host joining a pool whose etcd already runs: its member is added to the cluster (MemberAdd, as
 * `etcdctl member add` does) before it is started, and started with --initial-cluster-state
 * existing and the cluster's members as they are now. etcd takes one unstarted member at a time
 * (a second would count against the quorum before either runs), so a join while another added
 * member has not started yet is refused.
 */
import type { Etcd3 } from 'etcd3';
import { XenoError } from '../common/errors.js';

export interface MemberJoin {
  /** Whether this call added the member (false: it was in the cluster already). */
  added: boolean;
  /** Whether the member has run (etcd knows its name): its data dir exists, its flags no longer matter. */
  started: boolean;
  /** --initial-cluster for the host's member: NAME=PEER of every member, this one included. */
  initialCluster: string;
}

export async function ensureMember(root: Etcd3, host: string, peerUrl: string): Promise<MemberJoin> {
  const list = (await whenReachable(() => root.cluster.memberList({}))).members ?? [];
  let mine = list.find((m) => (m.peerURLs ?? []).includes(peerUrl));
  if (mine?.name && mine.name !== host) throw new XenoError('BAD_REQUEST', `etcd member ${mine.name} already uses ${peerUrl}: it is not ${host}'s`);
  const unstarted = list.find((m) => !m.name && m !== mine);
  if (unstarted) {
    throw new XenoError('BAD_STATE', `etcd has a member added but not started yet (${(unstarted.peerURLs ?? []).join(' ')}): start it first (etcd takes one new member at a time)`);
  }
  let members = list;
  const added = mine === undefined;
  if (added) {
    const res = await addWhenHealthy(root, peerUrl);
    members = res.members ?? [...list, res.member];
    mine = members.find((m) => (m.peerURLs ?? []).includes(peerUrl));
  }
  // the only member without a name is this one (another unstarted one was refused above)
  const initialCluster = members.map((m) => `${m.name || host}=${(m.peerURLs ?? [])[0]}`).join(',');
  return { added, started: Boolean(mine?.name), initialCluster };
}

/**
 * The documented flow starts the members, then joins at once: a member not listening yet refuses
 * the connection (gRPC UNAVAILABLE), and etcd3 picks an endpoint at random. Asked again for up to
 * 30 s; any other error is thrown at once, a cluster still unreachable then says so.
 */
async function whenReachable<T>(call: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      return await call();
    } catch (e) {
      if (!/UNAVAILABLE|ECONNREFUSED/.test(String(e))) throw e;
      if (Date.now() > deadline) throw new XenoError('HOST_ERROR', `the pool's etcd did not answer for 30 s (are its members started, at the URLs given?): ${e instanceof Error ? e.message : String(e)}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

/**
 * etcd (strict reconfig check) refuses a new voting member until every member has been connected
 * for a few seconds ("unhealthy cluster"): a cluster just started, or a member restarting. Asked
 * again for up to 30 s, then the refusal says so.
 */
async function addWhenHealthy(root: Etcd3, peerUrl: string) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      return await root.cluster.memberAdd({ peerURLs: [peerUrl] });
    } catch (e) {
      const unhealthy = /unhealthy cluster/.test(String(e));
      if (!unhealthy || Date.now() > deadline) {
        throw new XenoError('HOST_ERROR', `etcd did not add the member ${peerUrl}: ${e instanceof Error ? e.message : String(e)}${unhealthy ? ' (a member of the cluster is down or was not connected long enough: start every member, then join again)' : ''}`);
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}
