import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BalloonCache } from './balloon-cache.js';

const MiB = 1024 * 1024;

function counted(answers: Array<number | Error>) {
  const asked: number[] = [];
  const cache = new BalloonCache(async (timeoutMs) => {
    asked.push(timeoutMs);
    const keep = cache.expectAnswer(); // as QemuVm.command does for every query-balloon
    const a = answers.shift();
    if (a === undefined || a instanceof Error) throw a ?? new Error('no more answers');
    keep(a);
    return { actual: a };
  });
  return { cache, asked };
}

test('one query, then figures from events and answers; concurrent readers share the query', async () => {
  const { cache, asked } = counted([512 * MiB, 300 * MiB]);
  const [a, b] = await Promise.all([cache.read(2000), cache.read(2000)]);
  assert.deepEqual([a, b], [512 * MiB, 512 * MiB]);
  assert.equal(asked.length, 1, 'one query for both');
  assert.equal(await cache.read(2000), 512 * MiB);
  assert.equal(asked.length, 1, 'a fresh figure is not asked again');
  cache.onEvent({ event: 'BALLOON_CHANGE', data: { actual: 256 * MiB } });
  assert.equal(await cache.read(2000), 256 * MiB, 'the event is the new figure');
  assert.equal(asked.length, 1);
});

test('a load, a resume, a reset or a migration event drops the figure: the next read asks', async () => {
  for (const drop of [
    (c: BalloonCache) => c.onCommand('migrate-incoming'),
    (c: BalloonCache) => c.onEvent({ event: 'RESUME', data: {} }),
    (c: BalloonCache) => c.onEvent({ event: 'RESET', data: {} }),
    (c: BalloonCache) => c.onEvent({ event: 'MIGRATION', data: { status: 'completed' } }),
  ]) {
    const { cache, asked } = counted([512 * MiB, 200 * MiB]);
    await cache.read(2000);
    cache.onCommand('query-status'); // other commands change nothing
    cache.onEvent({ event: 'STOP', data: {} });
    assert.equal(await cache.read(2000), 512 * MiB);
    drop(cache);
    assert.equal(await cache.read(2000), 200 * MiB);
    assert.equal(asked.length, 2);
  }
});

test('no balloon (the query fails): undefined, and not asked again at every read', async () => {
  const { cache, asked } = counted([new Error('No balloon device has been activated')]);
  assert.equal(await cache.read(2000), undefined);
  assert.equal(await cache.read(2000), undefined);
  assert.equal(asked.length, 1);
});

test('an answer asked before an event is not kept over it: the event is the newer figure', async () => {
  const { cache, asked } = counted([]);
  const keep = cache.expectAnswer(); // a query-balloon sent...
  cache.onEvent({ event: 'BALLOON_CHANGE', data: { actual: 256 * MiB } }); // ...an event read before its answer resolves...
  keep(512 * MiB); // ...and the answer, which QEMU wrote before that event
  assert.equal(await cache.read(2000), 256 * MiB);
  const later = cache.expectAnswer(); // asked after the event: kept
  later(300 * MiB);
  assert.equal(await cache.read(2000), 300 * MiB);
  const dropped = cache.expectAnswer();
  cache.onEvent({ event: 'RESUME', data: {} });
  dropped(100 * MiB); // asked before the resume: not kept, and the figure is gone
  assert.equal(asked.length, 0);
  assert.equal(await cache.read(2000), undefined, 'QEMU is asked (and here has no answer)');
  assert.equal(asked.length, 1);
});
