/**
 * A pool of three hosts (test/helpers/pool-lab.ts: network namespaces on a bridge, a 3-member etcd
 * with TLS and client-certificate auth, a xenod per host) driven through the real CLI of each host:
 * host-list, pool-wide names taken by one etcd transaction, placement (start --on, free memory,
 * disabled hosts), list --pool and actions from any host on any guest (forwarded through the pool
 * door), pool-eject refused while guests run; and a host without the pool keys as before.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { GUEST, TestDaemon, guestCfg } from './helpers/harness.js';
import { PoolLab } from './helpers/pool-lab.js';
import { labEtcdctl } from './helpers/pool-lab-etcd.js';
import { until } from './helpers/relocation-lab.js';

interface HostRow {
  name: string;
  state: string;
  memFreeKiB: number;
  guests: number;
  leaseAgeS: number | null;
  accel: string;
}

interface PoolRow {
  name: string;
  host: string | null;
  state: string;
}

describe('a pool of three hosts', { timeout: 900_000 }, () => {
  let lab: PoolLab;
  const cfgs: Record<string, string> = {};

  before(async () => {
    // host2 keeps 2 GiB more for itself: the least free memory of the three
    lab = await PoolLab.up({ perHost: { host2: ['(dom0-min-mem 2304)'] } });
    const d1 = lab.daemon('host1');
    for (const n of ['g1', 'g2', 'g3']) cfgs[n] = d1.writeCfg(n, guestCfg(n, n === 'g3' ? { anti_affinity: '[ "web" ]' } : n === 'g2' ? { anti_affinity: '[ "web" ]' } : {}));
  });
  after(async () => {
    await lab?.down();
  });

  const hostList = async (host: string) => (JSON.parse(await lab.daemon(host).ok(['host-list', '--json'])) as { hosts: HostRow[]; cpu: { model: string; note: string } });
  const poolList = async (host: string) => JSON.parse(await lab.daemon(host).ok(['list', '--pool', '--json'])) as PoolRow[];
  const where = async (host: string, name: string) => (await poolList(host)).find((r) => r.name === name);

  test('host-list on any host shows all three up, with their memory and lease, and the pool CPU model', async () => {
    for (const h of ['host1', 'host3']) {
      const r = await hostList(h);
      assert.deepEqual(r.hosts.map((x) => [x.name, x.state]), [['host1', 'up'], ['host2', 'up'], ['host3', 'up']]);
      for (const x of r.hosts) {
        assert.ok(x.memFreeKiB > 0 && x.leaseAgeS !== null);
        if (x.accel === 'tcg') assert.equal(r.cpu.model, 'qemu64');
      }
    }
    const text = await lab.daemon('host2').ok(['host-list']);
    assert.match(text, /^host3\s+up\s+10\.197\.0\.3/m);
    assert.match(text, /CPU model: qemu64 \(TCG/);
  });

  test('two hosts defining the same name at once: exactly one wins, the other is told who has it', async () => {
    for (let round = 0; round < 4; round++) {
      const name = `race${round}`;
      const f1 = lab.daemon('host1').writeCfg(name, guestCfg(name));
      const f2 = lab.daemon('host2').writeCfg(name, guestCfg(name));
      const [a, b] = await Promise.all([lab.daemon('host1').xeno(['new', f1]), lab.daemon('host2').xeno(['new', f2])]);
      assert.deepEqual([a.code, b.code].sort(), [0, 1], `round ${round}: ${a.stderr} | ${b.stderr}`);
      const loser = a.code ? a : b;
      assert.match(loser.stderr, new RegExp(`a guest named ${name} is already defined in the pool \\(on host[12]\\)`));
    }
    // and, closer together (straight to the three APIs, no CLI start-up between them), many times
    for (let round = 0; round < 15; round++) {
      const name = `burst${round}`;
      const answers = await Promise.allSettled(lab.hosts.map((h) => h.daemon!.client.post('/v1/definitions', { cfgText: guestCfg(name), cfgFile: `${name}.cfg` })));
      assert.equal(answers.filter((a) => a.status === 'fulfilled').length, 1, `round ${round}: ${answers.map((a) => (a.status === 'rejected' ? String(a.reason) : 'ok')).join(' | ')}`);
    }
    // the pool's definitions are seen from the third host too
    const off = JSON.parse(await lab.daemon('host3').ok(['list', '--all', '--json'])) as Array<{ name: string; state: string }>;
    assert.deepEqual(off.filter((r) => r.name.startsWith('race')).map((r) => [r.name, r.state]), [0, 1, 2, 3].map((i) => [`race${i}`, 'off']));
  });

  test('start --on places on that host; without it, on the host with the most free memory', async () => {
    for (const n of ['g1', 'g2', 'g3']) await lab.daemon('host1').ok(['new', cfgs[n]!]);
    assert.match(await lab.daemon('host2').ok(['start', 'g1', '--on', 'host1']), /Started domain g1 \(id=\d+\) on host1/);
    await until('host1 reports g1 in its free memory', async () => (await hostList('host2')).hosts.find((h) => h.name === 'host1')!.guests === 1);
    const free = Object.fromEntries((await hostList('host2')).hosts.map((h) => [h.name, h.memFreeKiB]));
    assert.ok(free.host3! > free.host1! && free.host1! > free.host2!, JSON.stringify(free));
    // placement (from host1's CLI): host3 has the most free memory
    assert.match(await lab.daemon('host1').ok(['start', 'g2']), /Started domain g2 .* on host3/);
    assert.ok((await lab.daemon('host3').row('g2')) !== undefined, 'g2 runs on host3');
    assert.equal(await lab.daemon('host1').row('g2'), undefined);
    // a second start of a running pool guest is refused wherever it is asked
    const again = await lab.daemon('host2').xeno(['start', 'g2']);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /g2 already runs on host3/);
  });

  test('anti_affinity and a disabled host keep a guest off a host', async () => {
    // g3 shares the tag "web" with g2 (on host3); host1 is disabled: only host2 is left
    await lab.daemon('host3').ok(['host-disable', 'host1']);
    await until('host1 shows disabled', async () => (await hostList('host2')).hosts.find((h) => h.name === 'host1')!.state === 'disabled');
    const refused = await lab.daemon('host2').xeno(['start', 'g3', '--on', 'host3']);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /host3 runs g2, which shares anti_affinity tag web/);
    const onDisabled = await lab.daemon('host2').xeno(['start', 'g3', '--on', 'host1']);
    assert.match(onDisabled.stderr, /host1 is disabled/);
    assert.match(await lab.daemon('host3').ok(['start', 'g3']), /Started domain g3 .* on host2/);
    await lab.daemon('host2').ok(['host-enable', 'host1']);
  });

  test('list --pool from any host shows every guest with its host', async () => {
    for (const h of ['host1', 'host2', 'host3']) {
      const rows = await poolList(h);
      const placed = rows.filter((r) => /^g\d$/.test(r.name)).map((r) => [r.name, r.host]);
      assert.deepEqual(placed, [['g1', 'host1'], ['g3', 'host2'], ['g2', 'host3']]);
    }
    assert.match(await lab.daemon('host2').ok(['list', '--pool']), /^g1\s+host1\s+\d+/m);
  });

  test("an action from host3's CLI on a guest of host1 is done by host1", async () => {
    await lab.daemon('host3').ok(['pause', 'g1']);
    assert.equal((await lab.daemon('host1').row('g1'))?.state, 'paused');
    assert.equal((await where('host3', 'g1'))?.state, 'paused');
    await lab.daemon('host3').ok(['unpause', 'g1']);
    assert.equal((await lab.daemon('host1').row('g1'))?.state, 'running');
    // its console too, both ways, through host1's door: the typed line's echo holds only "6*7", so
    // a 42 alone on a line proves host1's guest shell ran what host3's CLI typed
    // typed once the guest's shell is up: a shell starting flushes what was typed before it (seen
    // on a loaded host: the line arrived as "o $((6*7))")
    await lab.daemon('host1').waitConsole('g1', /xeno# /, 120_000);
    const con = await lab.daemon('host3').xeno(['console', 'g1'], { input: 'echo $((6*7))\n', timeoutMs: 15_000 });
    assert.match(con.stdout, /^42\r?$/m, `host3's console of g1: ${con.stdout.slice(-300)} ${con.stderr}`);
    assert.match(con.stdout, /heartbeat \d+/);
    // destroy from host1 of host3's guest: gone there, and its pool entry with it
    await lab.daemon('host1').ok(['destroy', 'g2']);
    assert.equal(await lab.daemon('host3').row('g2'), undefined);
    assert.deepEqual(await where('host2', 'g2'), { name: 'g2', state: 'off', host: null, maxmem: 128 });
    // a guest no host runs is no host's: the error is the usual one
    const none = await lab.daemon('host3').xeno(['pause', 'nosuch']);
    assert.match(none.stderr, /nosuch/);
  });

  test('a live migration between pool hosts, by host name, with no key file but the pool\'s', async () => {
    // the lab's xenods have no xeno-relocation-key-file: they share the pool's key from etcd
    assert.doesNotMatch(lab.daemon('host2').log, /relocation-key-file/);
    const before = await lab.daemon('host2').waitConsole('g3', /heartbeat (\d+)/, 180_000);
    const runningG3 = async () => {
      const r = JSON.parse(await labEtcdctl(lab, lab.host('host1'), lab.hosts, ['get', `/xeno/${lab.pool}/running/g3`, '-w', 'json'])) as { kvs?: Array<{ create_revision: number; value: string }> };
      const kv = r.kvs?.[0];
      return kv && { created: kv.create_revision, host: (JSON.parse(Buffer.from(kv.value, 'base64').toString()) as { host: string }).host };
    };
    const claimed = await runningG3();
    assert.equal(claimed?.host, 'host2');
    // asked on host3, about host2's guest, to host1 by its pool name
    assert.match(await lab.daemon('host3').ok(['migrate', 'g3', 'host1', '--live']), /Migrated domain g3 to 10\.197\.0\.1:8002 \(live/);
    assert.equal(await lab.daemon('host2').row('g3'), undefined);
    assert.equal((await lab.daemon('host1').row('g3'))?.state, 'running');
    // running/g3 names host1 from the commit on (before the source was told ok), not at a later
    // sync: the entry was taken over in place (same create revision), never deleted and made again
    assert.deepEqual(await runningG3(), { created: claimed!.created, host: 'host1' });
    assert.equal((await where('host2', 'g3'))?.host, 'host1');
    // the guest goes on where it was (its memory came along): its counter continues on host1
    const afterMove = await lab.daemon('host1').waitConsole('g3', /heartbeat (\d+)/, 120_000);
    assert.ok(Number(afterMove[1]) > Number(before[1]), `${afterMove[1]} after ${before[1]}`);
  });

  test('pool-eject is refused while the host runs guests, done once it runs none', async () => {
    // the refusal reads running/ in etcd: g3, migrated in, is there since its commit
    const r = await lab.daemon('host2').xeno(['pool-eject', 'host1']);
    assert.notEqual(r.code, 0, `pool-eject of host1 running guests was accepted: ${r.stdout}`);
    assert.match(r.stderr, /host host1 runs (g1, g3|g3, g1): migrate or stop them before ejecting it/);
    assert.equal((await hostList('host3')).hosts.length, 3);
    await lab.daemon('host1').ok(['destroy', 'g1']);
    await lab.daemon('host1').ok(['destroy', 'g3']);
    // from inside host2 (its etcd user removal talks to etcd as root)
    await lab.cli(lab.host('host2').ns, ['pool-eject', 'host3', '--dir', lab.poolDir, '--etcd', lab.etcdUrls().join(',')], 60_000, lab.daemon('host2').socket);
    assert.deepEqual((await hostList('host1')).hosts.map((h) => h.name), ['host1', 'host2']);
    // host3's certificate no longer opens etcd: its xenod's refresh fails and its record stays gone
    await until('host3 has lost its etcd access', () => /pool: refresh failed: .*(permission denied|user name not found|authentication failed)/i.test(lab.daemon('host3').log), 60_000);
    assert.deepEqual((await hostList('host2')).hosts.map((h) => h.name), ['host1', 'host2']);
  });
});

describe('a host without the pool keys', { timeout: 300_000 }, () => {
  const d = new TestDaemon();
  before(() => d.start());
  after(() => d.cleanup());

  test('stays standalone: its own definitions, no pool commands, no --on', async () => {
    await d.ok(['new', d.writeCfg('solo', guestCfg('solo', { kernel: GUEST.kernel }))]);
    assert.deepEqual((JSON.parse(await d.ok(['list', '--all', '--json'])) as Array<{ name: string; state: string }>).map((r) => [r.name, r.state]), [['Domain-0', 'running'], ['solo', 'off']]);
    for (const args of [['host-list'], ['list', '--pool'], ['start', 'solo', '--on', 'host1']]) {
      const r = await d.xeno(args);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /not in a pool/, args.join(' '));
    }
    assert.match(await d.ok(['start', 'solo']), /Started domain solo \(id=\d+\)$/m);
  });
});
