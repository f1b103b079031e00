import assert from 'node:assert/strict';
import { test } from 'node:test';
import { tcgLiveHazard } from './tcg-hazards.js';

const precopy = { postcopy: false, parallel: 1, autoConverge: true, maxDowntimeMs: 300 };

test('under TCG a live copy of a multi-vcpu guest or over multifd is done paused, and says why', () => {
  assert.match(tcgLiveHazard('tcg', 2, precopy, true)!, /^2 vcpus under TCG: /);
  assert.match(tcgLiveHazard('tcg', 1, { ...precopy, parallel: 3, autoConverge: false }, true)!, /^3 channels under TCG: .*multifd/);
  assert.equal(tcgLiveHazard('tcg', 1, precopy, true), undefined, 'one vcpu, one stream: live');
  assert.equal(tcgLiveHazard('tcg', 4, { ...precopy, parallel: 2 }, false), undefined, 'an offline copy is paused anyway');
});

test('postcopy is refused under TCG, and KVM is never concerned', () => {
  assert.throws(() => tcgLiveHazard('tcg', 1, { ...precopy, postcopy: true, autoConverge: false }, true), /postcopy is not offered under TCG: QEMU 7\.2 lost guest memory/);
  assert.equal(tcgLiveHazard('kvm', 8, { ...precopy, postcopy: true }, true), undefined);
  assert.equal(tcgLiveHazard('kvm', 8, { ...precopy, parallel: 4 }, true), undefined);
});
