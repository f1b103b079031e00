/** The skip rule: under CI=true only a reason the README documents may skip; anything else fails. */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { documentedSkips, skipIf } from './helpers/skips.js';

describe('skips under CI', () => {
  const ci = process.env.CI;
  afterEach(() => {
    if (ci === undefined) delete process.env.CI;
    else process.env.CI = ci;
  });

  it('the README lists the documented reasons', () => {
    assert.deepEqual(documentedSkips(), ['needs root']);
  });

  it('outside CI any reason skips; under CI only a documented one, others throw', () => {
    delete process.env.CI;
    assert.equal(skipIf(false, 'anything'), false);
    assert.equal(skipIf(true, 'XENO_NET_MODES=nat leaves out bridge'), 'XENO_NET_MODES=nat leaves out bridge');
    process.env.CI = 'true';
    assert.equal(skipIf(false, 'anything'), false, 'a test that runs is never affected');
    assert.equal(skipIf(true, 'needs root (cgroups)'), 'needs root (cgroups)');
    assert.throws(() => skipIf(true, 'XENO_NET_MODES=nat leaves out bridge'), /skipped under CI, which is a failure: XENO_NET_MODES=nat leaves out bridge/);
    assert.throws(() => skipIf(true, 'no cpu cgroup on this host'), /not a documented skip in README\.md/);
  });
});
