/**
 * `npm run bench -- ha --agent [--rounds N] [--ttl S]`: pool HA timing at AGENT level against a real etcd
 * (3 members on 127.0.0.1): three hosts, each its own etcd client, HaAgent and witness, guests that
 * are real processes (test/helpers/ha-hosts.ts), at the production timing (lease TTL 10 s, fence 6 s).
 *   - restart time: from a host killed outright to its HA guest's process started on another host
 *     (a lab run adds the guest's boot to its first heartbeat on top of this);
 *   - the longest blip of a host's link that fences nothing (bisection).
 */
import { CuttableLink } from '../test/helpers/cuttable-link.js';
import { LocalEtcd } from '../test/helpers/etcd-local.js';
import { TestHost, runs, sleep, waitFor } from '../test/helpers/ha-hosts.js';
import { monoMs } from '../src/pool/ha/clock.js';
import { fenceMsFor } from '../src/pool/ha/service.js';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
}

async function threeHosts(etcd: LocalEtcd, link: CuttableLink, ttlSec: number, tag: string): Promise<TestHost[]> {
  const opts = { ttlSec, fenceMs: fenceMsFor(ttlSec) };
  const a = new TestHost(`A${tag}`, await Promise.all(etcd.endpoints.map((e) => link.tcp(e))), opts);
  const b = new TestHost(`B${tag}`, etcd.endpoints, opts);
  const c = new TestHost(`C${tag}`, etcd.endpoints, opts);
  for (const h of [b, a, c]) await h.start();
  const via = async (h: TestHost) => ({ host: h.name, address: '127.0.0.1', port: await link.udp(h.port) });
  a.setPeers([await via(b), await via(c)]);
  b.setPeers([await via(a), { host: c.name, address: '127.0.0.1', port: c.port }]);
  c.setPeers([await via(a), { host: b.name, address: '127.0.0.1', port: b.port }]);
  return [a, b, c];
}

async function restartRound(etcd: LocalEtcd, ttlSec: number, i: number): Promise<number> {
  const link = new CuttableLink();
  const hosts = await threeHosts(etcd, link, ttlSec, `r${i}`);
  const [a] = hosts as [TestHost, TestHost, TestHost];
  const name = `bench-${i}`;
  try {
    await a.create(name);
    await sleep(2000);
    const t0 = monoMs();
    await a.killOutright();
    const again = await waitFor('restart elsewhere', () => runs.find((r) => r.name === name && r.host !== a.name), 120_000);
    return again.startedAt - t0;
  } finally {
    for (const h of hosts.slice(1)) await h.stop();
    link.close();
  }
}

async function blipFences(etcd: LocalEtcd, ttlSec: number, ms: number, i: number): Promise<boolean> {
  const link = new CuttableLink();
  const hosts = await threeHosts(etcd, link, ttlSec, `b${i}`);
  try {
    await hosts[0]!.create(`blip-${i}`);
    await sleep(2000);
    link.cut();
    await sleep(ms);
    link.heal();
    await sleep(3000);
    return hosts[0]!.agent.events.some((e) => e.what.startsWith('fence'));
  } finally {
    for (const h of hosts) await h.stop();
    link.close();
  }
}

export async function run(): Promise<void> {
  const rounds = arg('rounds', 5);
  const ttl = arg('ttl', 10);
  const etcd = await LocalEtcd.start(3);
  try {
    const times: number[] = [];
    for (let i = 0; i < rounds; i++) {
      times.push(await restartRound(etcd, ttl, i));
      process.stdout.write(`round ${i + 1}: host killed -> HA guest started elsewhere in ${(times[i]! / 1000).toFixed(2)} s\n`);
    }
    const sorted = [...times].sort((x, y) => x - y);
    const median = sorted[Math.floor(sorted.length / 2)]!;
    process.stdout.write(`restart: median ${(median / 1000).toFixed(2)} s, min ${(sorted[0]! / 1000).toFixed(2)} s, max ${(sorted[sorted.length - 1]! / 1000).toFixed(2)} s (lease TTL ${ttl} s, fence ${fenceMsFor(ttl)} ms)\n`);
    let lo = 500;
    let hi = ttl * 1000;
    for (let i = 0; hi - lo > 250; i++) {
      const mid = Math.round((lo + hi) / 2);
      if (await blipFences(etcd, ttl, mid, i)) hi = mid;
      else lo = mid;
    }
    process.stdout.write(`longest blip without fencing: ${(lo / 1000).toFixed(2)} s (the next tried, ${(hi / 1000).toFixed(2)} s, fenced)\n`);
  } finally {
    await etcd.destroy();
  }
}
