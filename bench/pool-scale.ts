/**
 * `npm run bench -- pool-scale [--hosts 10,25,50,100,200] [--guests 50] [--seconds 10]`: a load
 * script speaking etcd the way N pooled hosts with M guests each do, against a REAL 3-member etcd
 * (test/helpers/etcd-local.ts, on 127.0.0.1): per host one lease renewed every second, a host
 * record refreshed every 2 s, a watch on ha/ and one on leader/, M disk locks + running/ entries
 * taken in one txn per guest, and the leader's election key. Measured for each N:
 *   - renewal latency (p50/p99) and range/txn latency of the leader's scan during steady load;
 *   - the leader's decision time: from one host's lease revoked (its locks gone) to all M of its
 *     HA guests assigned elsewhere (read hosts/, running/, ha/; plan; M guarded txns).
 * One Node process plays every host (one etcd3 client per host); figures go to docs/pool-ha.md.
 */
import { Etcd3, type Lease, type Namespace } from 'etcd3';
import { acquireGuestLocks } from '../src/pool/ha/disk-locks.js';
import { LEADER_PREFIX } from '../src/pool/ha/election.js';
import { HA_PREFIX, placeOrphans, type HaEntry } from '../src/pool/ha/restart.js';
import { LocalEtcd } from '../test/helpers/etcd-local.js';
import { monoMs } from '../src/pool/ha/clock.js';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : dflt;
}

function pct(xs: number[], p: number): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

interface SimHost {
  name: string;
  client: Etcd3;
  ns: Namespace;
  lease: Lease;
  timers: NodeJS.Timeout[];
}

async function limited<T>(items: T[], n: number, f: (t: T) => Promise<void>): Promise<void> {
  let i = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (i < items.length) await f(items[i++]!);
  }));
}

/** A host's renewals (every second) and host record refresh (every 2 s), from its grant on. */
function keepAlive(h: SimHost, renewals: number[], failures: { renew: number }): void {
  h.timers.push(setInterval(() => {
    const t0 = monoMs();
    h.lease.keepaliveOnce({ deadline: Date.now() + 3000 }).then(() => renewals.push(monoMs() - t0), () => failures.renew++);
  }, 1000));
  h.timers.push(setInterval(() => void h.lease.put(`hosts/${h.name}`).value(JSON.stringify({ name: h.name, memFreeKiB: 64 * 1024 * 1024, at: Date.now() })).catch(() => undefined), 2000));
}

async function round(etcd: LocalEtcd, pool: string, nHosts: number, mGuests: number, seconds: number): Promise<Record<string, number>> {
  const renewals: number[] = [];
  const scans: number[] = [];
  const failures = { renew: 0 };
  const hosts: SimHost[] = [];
  for (let h = 0; h < nHosts; h++) {
    const client = new Etcd3({ hosts: etcd.endpoints, dialTimeout: 5000 });
    const ns = client.namespace(`/xeno/${pool}/`);
    const lease = ns.lease(10, { autoKeepAlive: false });
    await lease.grant();
    const sim: SimHost = { name: `h${h}`, client, ns, lease, timers: [] };
    hosts.push(sim);
    keepAlive(sim, renewals, failures);
  }
  const setupStart = monoMs();
  // every host: its record, its candidacy, its watches, its guests' locks (M txns)
  await limited(hosts, 16, async (h) => {
    await h.lease.put(`hosts/${h.name}`).value(JSON.stringify({ name: h.name, memFreeKiB: 64 * 1024 * 1024 }));
    await h.ns.if(LEADER_PREFIX + h.name, 'Create', '==', 0).then(h.lease.put(LEADER_PREFIX + h.name).value(h.name)).commit();
    const w1 = await h.ns.watch().prefix(HA_PREFIX).create();
    const w2 = await h.ns.watch().prefix(LEADER_PREFIX).create();
    w1.on('error', () => undefined);
    w2.on('error', () => undefined);
    for (let g = 0; g < mGuests; g++) {
      const name = `${h.name}-g${g}`;
      await acquireGuestLocks(h.ns, h.lease, {
        host: h.name, name, disks: [{ target: `/srv/pool/${name}.img`, format: 'raw', vdev: 'xvda', access: 'rw', devtype: 'disk' }],
        running: { host: h.name, domid: g + 1, since: Date.now() },
        extra: { key: HA_PREFIX + name, value: { host: h.name, assigned: false, epoch: 1 } satisfies HaEntry, modRevision: '0' },
      });
    }
  });
  const setupMs = monoMs() - setupStart;
  renewals.length = 0; // steady state only
  failures.renew = 0;
  const leader = hosts[0]!;
  const leaderRev = Number((await leader.ns.get(LEADER_PREFIX + leader.name).exec()).kvs[0]!.create_revision);
  const guard = { key: LEADER_PREFIX + leader.name, createRevision: leaderRev };
  const info = async (name: string) => ({ name, memoryMiB: 64, priority: 0 });
  const until = monoMs() + seconds * 1000;
  while (monoMs() < until) {
    const t0 = monoMs();
    await placeOrphans(leader.ns, guard, info); // nothing orphaned: the leader's periodic scan
    scans.push(monoMs() - t0);
    await new Promise((r) => setTimeout(r, 500));
  }
  // one host fails: its lease goes; the leader decides where its M guests go
  const victim = hosts[hosts.length - 1]!;
  for (const t of victim.timers) clearInterval(t);
  await victim.lease.revoke().catch(() => undefined);
  const t0 = monoMs();
  let assigned = 0;
  while (assigned < mGuests && monoMs() - t0 < 120_000) {
    const r = await placeOrphans(leader.ns, guard, info);
    assigned += r.assigned.length;
  }
  const decision = monoMs() - t0;
  for (const h of hosts) {
    for (const t of h.timers) clearInterval(t);
    if (h !== victim) await h.lease.revoke().catch(() => undefined);
    h.client.close();
  }
  await etcd.client().delete().prefix(`/xeno/${pool}/`).catch(() => undefined);
  return {
    hosts: nHosts, guests: nHosts * mGuests,
    renewP50: pct(renewals, 50), renewP99: pct(renewals, 99), renewFailures: failures.renew,
    scanP50: pct(scans, 50), scanP99: pct(scans, 99),
    decisionMs: assigned === mGuests ? decision : NaN,
    setupS: setupMs / 1000,
  };
}

export async function run(): Promise<void> {
  const ns = arg('hosts', '10,25,50,100,200').split(',').map(Number);
  const m = Number(arg('guests', '50'));
  const seconds = Number(arg('seconds', '10'));
  const etcd = await LocalEtcd.start(3);
  try {
    process.stdout.write(`pool-scale: 3-member etcd on 127.0.0.1, M=${m} guests per host, ${seconds} s of steady load per N\n`);
    process.stdout.write('| N hosts | guests | renewal p50 / p99 (ms) | failed renewals | leader scan p50 / p99 (ms) | leader decision for one host (ms) | set-up (s) |\n| --- | --- | --- | --- | --- | --- | --- |\n');
    for (const [i, n] of ns.entries()) {
      let r: Record<string, number>;
      try {
        r = await round(etcd, `scale${i}`, n, m, seconds);
      } catch (e) {
        // past the knee: leases expire under the load itself (a renewal later than the TTL)
        process.stdout.write(`| ${n} | ${n * m} | failed: ${(e as Error).message} | | | | |\n`);
        continue;
      }
      const f = (x: number) => (Number.isNaN(x) ? 'n/a' : x.toFixed(0));
      process.stdout.write(`| ${r.hosts} | ${r.guests} | ${f(r.renewP50!)} / ${f(r.renewP99!)} | ${r.renewFailures} | ${f(r.scanP50!)} / ${f(r.scanP99!)} | ${f(r.decisionMs!)} | ${r.setupS!.toFixed(1)} |\n`);
    }
  } finally {
    await etcd.destroy();
  }
}
