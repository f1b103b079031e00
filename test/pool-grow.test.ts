/**
 * Growing a running pool, as docs/pool.md says (real etcd members in namespaces, the real CLI): the
 * initial hosts' members start from the etcd.args their files-only pool-join wrote; a fourth host's
 * `pool-join --etcd` adds its member to the running cluster and writes it a newcomer's arguments;
 * started from them it joins, serves, and replicates; a join while another added member has not
 * started is refused before any file is made.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PoolLab } from './helpers/pool-lab.js';
import { labEtcdctl } from './helpers/pool-lab-etcd.js';
import { until } from './helpers/relocation-lab.js';

describe('a pool grown by a host while its etcd runs', { timeout: 300_000 }, () => {
  let lab: PoolLab;
  const args = (host: string) => JSON.parse(readFileSync(path.join(lab.poolDir, host, 'etcd.args'), 'utf8')) as string[];
  const flag = (argv: string[], name: string) => argv[argv.indexOf(name) + 1];
  /** `NAME,started|unstarted` per member, as etcd lists them. */
  const members = async () =>
    (await labEtcdctl(lab, lab.host('host1'), lab.hosts.slice(0, 3), ['member', 'list', '-w', 'simple']))
      .trim().split('\n').map((l) => l.split(', ')).map(([, status, name]) => `${name || '?'},${status}`).sort();

  before(async () => {
    lab = await PoolLab.up({ hosts: 4, late: 1, daemons: false });
  });
  after(async () => {
    await lab?.down();
  });

  it("the initial members start from the etcd.args their pool-join wrote: a new cluster of all three", async () => {
    for (const h of ['host1', 'host2', 'host3']) {
      const a = args(h);
      assert.equal(flag(a, '--initial-cluster-state'), 'new', h);
      assert.equal(flag(a, '--initial-cluster'), 'host1=https://10.197.0.1:2380,host2=https://10.197.0.2:2380,host3=https://10.197.0.3:2380', h);
    }
    assert.deepEqual(await members(), ['host1,started', 'host2,started', 'host3,started']);
  });

  it("a fourth host's pool-join --etcd adds its member; started from its etcd.args it joins and serves", async () => {
    const h4 = lab.host('host4');
    const out = await lab.joinLate(h4);
    assert.match(out, /its etcd member was added to the running cluster: start it with the arguments in .*host4\/etcd\.args/);
    const a = args('host4');
    assert.equal(flag(a, '--initial-cluster-state'), 'existing');
    assert.deepEqual(flag(a, '--initial-cluster')!.split(',').sort(), ['host1', 'host2', 'host3', 'host4'].map((h, i) => `${h}=https://10.197.0.${i + 1}:2380`));
    await until('host4 is a started member', async () => (await members().catch(() => [])).join(' ') === 'host1,started host2,started host3,started host4,started', 120_000, 500);
    // written through the new member alone, read through another one
    await until('the new member takes a write', async () => labEtcdctl(lab, h4, [h4], ['put', '/grow-probe', 'via-host4']).then(() => true, () => false), 60_000, 500);
    assert.match(await labEtcdctl(lab, lab.host('host1'), [lab.host('host1')], ['get', '/grow-probe', '--print-value-only']), /^via-host4$/m);
    const again = await lab.joinEtcd(h4);
    assert.doesNotMatch(again, /was added/, 'a second join adds nothing');
    assert.equal((await members()).length, 4);
  });

  it('a join while another added member has not started is refused, and makes no file', async () => {
    // host5 has no namespace: its member, once added, never starts
    const first = await lab.cli(lab.host('host1').ns, ['pool-join', 'host5', '--address', '10.197.0.5', '--dir', lab.poolDir, '--etcd', lab.etcdUrls().join(',')]);
    assert.match(first, /its etcd member was added/);
    await assert.rejects(
      lab.cli(lab.host('host1').ns, ['pool-join', 'host6', '--address', '10.197.0.6', '--dir', lab.poolDir, '--etcd', lab.etcdUrls().join(',')]),
      /etcd has a member added but not started yet \(https:\/\/10\.197\.0\.5:2380\): start it first/,
    );
    assert.ok(!existsSync(path.join(lab.poolDir, 'host6')), 'no files for host6');
    assert.equal((JSON.parse(readFileSync(path.join(lab.poolDir, 'pool.json'), 'utf8')) as { hosts: Record<string, string> }).hosts.host6, undefined);
    // the unstarted member is removed again, so that the 4 running members keep their quorum margin
    const id = (await labEtcdctl(lab, lab.host('host1'), lab.hosts.slice(0, 4), ['member', 'list'])).split('\n').find((l) => l.includes('10.197.0.5'))!.split(',')[0]!;
    await labEtcdctl(lab, lab.host('host1'), lab.hosts.slice(0, 4), ['member', 'remove', id]);
  });
});
