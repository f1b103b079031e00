import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ColumnRing, TieredSeries, downsample } from './ring.js';

test('a full ring drops its oldest rows and keeps the newest in order', () => {
  const r = new ColumnRing(3, 2);
  for (let t = 1; t <= 5; t++) r.push(t, [t * 10, t * 100]);
  assert.equal(r.length, 3);
  assert.deepEqual([0, 1, 2].map((i) => r.row(i)), [[3, 30, 300], [4, 40, 400], [5, 50, 500]]);
  assert.equal(r.firstAfter(3), 1);
  assert.equal(r.firstAfter(0), 0);
  assert.equal(r.firstAfter(5), 3);
  assert.deepEqual(r.newest(), [5, 50, 500]);
});

test('fine samples fold into one coarse sample per minute: counters keep the last, rates the mean', () => {
  const s = new TieredSeries(['last', 'mean'], { fineStep: 1, fineRows: 90, coarseStep: 60, coarseRows: 10 });
  // 3 minutes at 1 s: a counter rising by 1 a second, a rate of 10 in minute 0, 20 in minute 1, 30 in minute 2
  for (let t = 0; t < 180; t++) s.push(t, [t, 10 * (Math.floor(t / 60) + 1)]);
  assert.equal(s.fine.length, 90, 'the fine tier wrapped around');
  assert.equal(s.coarse.length, 2, 'two whole minutes folded; the third is still open');
  assert.deepEqual(s.coarse.row(0), [59, 59, 10]);
  assert.deepEqual(s.coarse.row(1), [119, 119, 20]);
  // a window older than the fine tier is answered at 1 min, with the open minute folded at the end
  const old = s.query(-1);
  assert.deepEqual(old, [[59, 59, 10], [119, 119, 20], [179, 179, 30]]);
  // a recent window comes at 1 s
  const recent = s.query(170);
  assert.deepEqual(recent.map((r) => r[0]), [171, 172, 173, 174, 175, 176, 177, 178, 179]);
  // a step asked for is folded on the way out
  assert.deepEqual(s.query(149, 10), [[159, 159, 30], [169, 169, 30], [179, 179, 30]]);
});

test('the coarse tier wraps too, and NaN values do not poison a mean', () => {
  const s = new TieredSeries(['mean'], { fineStep: 1, fineRows: 5, coarseStep: 10, coarseRows: 2 });
  for (let t = 0; t < 50; t++) s.push(t, [t % 10 === 0 ? NaN : 1]);
  assert.deepEqual([0, 1].map((i) => s.coarse.row(i)), [[29, 1], [39, 1]]);
  assert.deepEqual(downsample([[0, 1], [1, 3], [2, NaN], [5, 7]], 5, ['mean']), [[2, 2], [5, 7]]);
});
