import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkRequestTuning } from './postcopy.js';
import { checkTuning } from './server.js';

test('a migration request tuning: the policy defaults, and every refused combination is a 400 saying why', () => {
  assert.deepEqual(checkRequestTuning({}, true), { postcopy: false, parallel: 1, autoConverge: true, maxDowntimeMs: 300 });
  assert.equal(checkRequestTuning({}, false).autoConverge, false, 'offline: nothing to converge');
  assert.equal(checkRequestTuning({ postcopy: true }, true).autoConverge, false, 'postcopy bounds it without throttling');
  assert.equal(checkRequestTuning({ parallel: 4 }, true).autoConverge, false, 'multifd without the throttle');
  assert.equal(checkRequestTuning({ autoConverge: false, maxDowntimeMs: 5 }, true).maxDowntimeMs, 5);
  const refused = (req: Parameters<typeof checkRequestTuning>[0], live: boolean, re: RegExp) =>
    assert.throws(() => checkRequestTuning(req, live), (e: Error & { code?: string }) => e.code === 'BAD_REQUEST' && re.test(e.message));
  refused({ postcopy: true }, false, /postcopy is for a live migration/);
  refused({ postcopy: true, parallel: 2 }, true, /cannot be combined: QEMU 7\.2/);
  refused({ parallel: 2, autoConverge: true }, true, /auto-converge cannot be combined/);
  refused({ parallel: 0 }, true, /parallel must be an integer from 1 to 16/);
  refused({ parallel: 17 }, true, /parallel must be an integer from 1 to 16/);
  refused({ maxDowntimeMs: 0 }, true, /maxDowntimeMs must be an integer/);
});

test("the target checks the source's tuning as any input from the wire", () => {
  assert.deepEqual(checkTuning(undefined), {});
  assert.deepEqual(checkTuning({ postcopy: true }), { postcopy: true, parallel: 1 });
  assert.deepEqual(checkTuning({ parallel: 3 }), { postcopy: false, parallel: 3 });
  for (const bad of [{ parallel: 99 }, { parallel: 1.5 }, { postcopy: 'yes' }, { postcopy: true, parallel: 2 }]) {
    assert.throws(() => checkTuning(bad as never), (e: Error & { code?: string }) => e.code === 'BAD_REQUEST', JSON.stringify(bad));
  }
});
