/**
 * Disk locks and the leader election against a REAL single-member etcd (started here in a temp
 * dir on random ports): one txn takes all of a guest's locks or none; locks go with the lease;
 * the leader is the oldest candidate, and a deposed leader's guarded write fails.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Etcd3, Namespace } from 'etcd3';
import { XenoError } from '../../common/errors.js';
import type { DiskSpec } from '../../model/domain-config.js';
import { LocalEtcd } from '../../../test/helpers/etcd-local.js';
import { acquireGuestLocks, diskId, lockHolder, lockedTargets, releaseGuestLocks } from './disk-locks.js';
import { LeaderElection } from './election.js';

const disk = (target: string, access: 'rw' | 'ro' = 'rw', devtype: 'disk' | 'cdrom' = 'disk'): DiskSpec => ({ target, format: 'raw', vdev: 'xvda', access, devtype });

let etcd: LocalEtcd;
let c1: Etcd3;
let c2: Etcd3;
let ns1: Namespace;
let ns2: Namespace;

before(async () => {
  etcd = await LocalEtcd.start(1);
  c1 = etcd.client();
  c2 = etcd.client();
  ns1 = c1.namespace('/xeno/locktest/');
  ns2 = c2.namespace('/xeno/locktest/');
});
after(async () => {
  c1?.close();
  c2?.close();
  await etcd?.destroy();
});

describe('disk locks (real etcd)', () => {
  it('a disk id is stable per target path; read-only disks and cdroms take no lock', () => {
    assert.equal(diskId('/srv/a.img'), diskId('/srv/a.img'));
    assert.notEqual(diskId('/srv/a.img'), diskId('/srv/b.img'));
    assert.match(diskId('/srv/a.img'), /^[0-9a-f]{32}$/);
    assert.deepEqual(lockedTargets([disk('/srv/a.img'), disk('/srv/ro.img', 'ro'), disk('/srv/cd.iso', 'ro', 'cdrom'), disk('/srv/a.img')]), ['/srv/a.img']);
  });

  it('two hosts racing for the same disks: exactly one wins, the loser takes nothing', async () => {
    const l1 = ns1.lease(30, { autoKeepAlive: false });
    const l2 = ns2.lease(30, { autoKeepAlive: false });
    const shared = [disk('/srv/s1.img'), disk('/srv/s2.img')];
    const results = await Promise.allSettled([
      acquireGuestLocks(ns1, l1, { host: 'h1', name: 'g', disks: shared, running: { host: 'h1' } }),
      acquireGuestLocks(ns2, l2, { host: 'h2', name: 'g', disks: shared, running: { host: 'h2' } }),
    ]);
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1, JSON.stringify(results.map((r) => r.status)));
    const loser = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    assert.ok(loser.reason instanceof XenoError && loser.reason.code === 'BUSY', String(loser.reason));
    const h1 = await lockHolder(ns1, '/srv/s1.img');
    const h2 = await lockHolder(ns1, '/srv/s2.img');
    assert.deepEqual(h1, h2, 'both locks belong to the same winner');

    // a second guest sharing ONE disk is refused and leaves its other disk unlocked
    await assert.rejects(
      acquireGuestLocks(ns2, l2, { host: 'h2', name: 'other', disks: [disk('/srv/free.img'), disk('/srv/s2.img')], running: {} }),
      /disk \/srv\/s2.img is locked by g on host h[12]/,
    );
    assert.equal(await lockHolder(ns1, '/srv/free.img'), null);
    assert.equal(await ns1.get('running/other').string(), null);

    // the locks go with the lease: revoke the winner's, and the other host can take them
    const winner = h1!.host === 'h1' ? l1 : l2;
    await winner.revoke();
    assert.equal(await lockHolder(ns1, '/srv/s1.img'), null);
    assert.equal(await ns1.get('running/g').string(), null);
    const other = winner === l1 ? { ns: ns2, l: l2, host: 'h2' } : { ns: ns1, l: l1, host: 'h1' };
    await acquireGuestLocks(other.ns, other.l, { host: other.host, name: 'g', disks: shared, running: { host: other.host } });
    assert.equal((await lockHolder(ns1, '/srv/s2.img'))!.host, other.host);
    await releaseGuestLocks(other.ns, other.host, 'g', shared);
    assert.equal(await lockHolder(ns1, '/srv/s2.img'), null);
    assert.equal(await ns1.get('running/g').string(), null);
    await other.l.revoke();
  });
});

describe('leader election on the host lease (real etcd)', () => {
  it('the oldest candidate leads; when its lease goes the next one does; a deposed leader cannot write', async () => {
    const l1 = ns1.lease(30, { autoKeepAlive: false });
    const l2 = ns2.lease(30, { autoKeepAlive: false });
    const e1 = new LeaderElection(ns1, 'h1', () => l1, 200);
    const e2 = new LeaderElection(ns2, 'h2', () => l2, 200);
    try {
      await e1.start();
      await e2.start();
      await e1.refresh();
      assert.equal(e1.isLeader(), true);
      assert.equal(e2.isLeader(), false);
      assert.equal(e2.leader(), 'h1');
      const stale = e1.leaderGuard()!;
      const becameLeader = new Promise<boolean>((r) => e2.once('change', r));
      await l1.revoke();
      assert.equal(await becameLeader, true);
      assert.equal(e2.leader(), 'h2');
      // h1's write guarded by its old leader key fails now
      const r = await ns1.if(stale.key, 'Create', '==', stale.createRevision).then(ns1.put('probe').value('x')).commit();
      assert.equal(r.succeeded, false);
      assert.equal(await ns1.get('probe').string(), null);
    } finally {
      // stopped even after a failure: their timers would keep the test process alive
      await e1.stop(false);
      await e2.stop(true);
      await l2.revoke().catch(() => undefined);
    }
  });
});
