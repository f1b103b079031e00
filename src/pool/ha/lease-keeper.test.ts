/**
 * The lease keeper's retry of a refused renewal, against a fake etcd namespace whose keep-alive
 * streams are refused at once (gRPC UNAVAILABLE, as from a dead member) every other time: the
 * retry, sent at once, renews, so the renewals never age past about one interval. Without it,
 * every refused renewal left them two intervals old (the pool lab's survivors went "stale" that
 * way, and the leader's hold-off started again). The real-etcd behaviour is in ha.test.ts.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import type { Namespace } from 'etcd3';
import { LeaseKeeper } from './lease-keeper.js';

/** A keep-alive stream: answers the write with a TTL, or fails at once. */
class FakeStream extends EventEmitter {
  constructor(private readonly refuse: boolean) {
    super();
  }
  write(): void {
    setImmediate(() => {
      if (this.refuse) this.emit('error', Object.assign(new Error('14 UNAVAILABLE: No connection established. connect ECONNREFUSED'), { code: 14 }));
      else this.emit('data', { TTL: '10' });
    });
  }
  end(): void {}
  cancel(): void {}
}

function fakeNamespace(refuse: (call: number) => boolean): { ns: Namespace; calls: () => number } {
  let n = 0;
  const lease = Object.assign(new EventEmitter(), { grant: async () => '42', release: () => undefined, revoke: async () => undefined });
  const ns = {
    lease: () => lease,
    leaseClient: { leaseKeepAlive: async () => new FakeStream(refuse(n++)), leaseRevoke: async () => ({}) },
  };
  return { ns: ns as unknown as Namespace, calls: () => n };
}

describe('LeaseKeeper', () => {
  it('sends a renewal refused at once again, so one refusing member does not age the renewals', async () => {
    const every = 500;
    // every first renewal of an interval refused: a dead member picked at random, then a live one
    const { ns, calls } = fakeNamespace((c) => c % 2 === 0);
    const keeper = new LeaseKeeper(ns, { ttlSec: 10, renewEveryMs: every });
    await keeper.start();
    let worst = 0;
    const sample = setInterval(() => (worst = Math.max(worst, keeper.renewAge())), 20);
    await new Promise((r) => setTimeout(r, 8 * every));
    clearInterval(sample);
    await keeper.stop(false);
    // one interval, plus the timer's and the sampler's slack; a refusal left unretried makes it 2 intervals
    assert.ok(worst < every * 1.5, `the renewals aged ${Math.round(worst)} ms at most (interval ${every} ms)`);
    assert.ok(calls() >= 12, `renewals and their retries were sent (${calls()})`);
  });

  it('gives up after its retries: a cluster refusing every renewal ages them', async () => {
    const every = 300;
    const { ns, calls } = fakeNamespace(() => true);
    const keeper = new LeaseKeeper(ns, { ttlSec: 10, renewEveryMs: every });
    await keeper.start();
    await new Promise((r) => setTimeout(r, 4 * every + 100));
    const age = keeper.renewAge();
    await keeper.stop(false);
    assert.ok(age > 4 * every, `no renewal since the grant (${Math.round(age)} ms)`);
    // 4 timer ticks, each sent 3 times (2 retries); one more allowed for the timer's slack
    assert.ok(calls() <= 4 * 3 + 1, `at most 2 retries per interval (${calls()} sent)`);
    assert.match(keeper.failureSummary(), /UNAVAILABLE/);
  });
});
