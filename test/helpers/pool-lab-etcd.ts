/**
 * etcdctl against the pool lab's 3-member etcd (TLS, client certificates, auth on): run inside a
 * host's namespace with the pool's root certificate. For the tests that fault etcd itself: which
 * member leads, a forced leader change (move-leader), waiting until the cluster answers again.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import type { LabHost, PoolLab } from './pool-lab.js';

const run = promisify(execFile);

/** etcdctl (API v3) in `via`'s namespace against the given members' client URLs. */
export async function labEtcdctl(lab: PoolLab, via: LabHost, members: LabHost[], args: string[], timeoutMs = 20_000): Promise<string> {
  const tls = ['--cacert', path.join(lab.poolDir, 'ca.crt'), '--cert', path.join(lab.poolDir, 'root.crt'), '--key', path.join(lab.poolDir, 'root.key')];
  const endpoints = members.map((m) => `https://${m.address}:2379`).join(',');
  const r = await run('ip', ['netns', 'exec', via.ns, 'etcdctl', '--endpoints', endpoints, ...tls, ...args], { env: { ...process.env, ETCDCTL_API: '3' }, timeout: timeoutMs });
  return r.stdout;
}

/** Member id (hex) and its leader's id, as one member sees it. */
export async function memberStatus(lab: PoolLab, m: LabHost): Promise<{ host: LabHost; id: string; leader: string }> {
  // 64-bit ids: quoted before JSON.parse, which would round them
  const text = (await labEtcdctl(lab, m, [m], ['endpoint', 'status', '-w', 'json'])).replace(/"(member_id|leader)":(\d+)/g, '"$1":"$2"');
  const [s] = JSON.parse(text) as Array<{ Status: { header: { member_id: string }; leader: string } }>;
  return { host: m, id: BigInt(s!.Status.header.member_id).toString(16), leader: BigInt(s!.Status.leader).toString(16) };
}

/**
 * Forces a leader change among the live members (etcdctl move-leader), to `to` if given (nothing
 * to do if it leads already); returns [from, to] hosts.
 */
export async function moveLeader(lab: PoolLab, live: LabHost[], to?: LabHost): Promise<[string, string]> {
  let last: unknown;
  for (let attempt = 0; attempt < 40; attempt++) {
    try {
      const st = await Promise.all(live.map((m) => memberStatus(lab, m)));
      const leader = st.find((s) => s.id === s.leader);
      if (to && leader?.host === to) return [to.name, to.name];
      const target = st.find((s) => s.id !== s.leader && (!to || s.host === to));
      if (leader && target) {
        await labEtcdctl(lab, leader.host, [leader.host], ['move-leader', target.id]);
        const after = await memberStatus(lab, target.host);
        if (after.leader === target.id) return [leader.host.name, target.host.name];
      }
    } catch (e) {
      last = e; // a member just (re)started may still be catching up ("bad leader transferee")
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`move-leader did not happen: ${String(last)}`);
}

/** Until a write through the members succeeds (the cluster has a leader and quorum again). */
export async function waitEtcdWritable(lab: PoolLab, members: LabHost[], timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await labEtcdctl(lab, members[0]!, members, ['put', '/lab-probe', String(Date.now())], 10_000);
      return;
    } catch (e) {
      if (Date.now() > deadline) throw new Error(`etcd did not answer again: ${(e as Error).message}`);
      await new Promise((r) => setTimeout(r, 300));
    }
  }
}
