import assert from 'node:assert/strict';
import { test } from 'node:test';
import { levelledModel, MODELS, poolCpuModel } from './cpu-model.js';

const upTo = (model: string) => MODELS.slice(0, MODELS.findIndex((m) => m.model === model) + 1).flatMap((m) => m.adds);

test('the levelled model is the newest one every host has all the flags of', () => {
  assert.equal(levelledModel([upTo('Broadwell-noTSX'), upTo('Haswell-noTSX'), [...upTo('IvyBridge'), 'avx2']]), 'IvyBridge');
  assert.equal(levelledModel([upTo('Broadwell-noTSX')]), 'Broadwell-noTSX');
  assert.equal(levelledModel([['fpu', 'sse2']]), 'qemu64');
  // a host missing one flag of a model keeps the whole pool below it
  assert.equal(levelledModel([upTo('Westmere'), upTo('Westmere').filter((f) => f !== 'aes')]), 'Nehalem');
});

test('under TCG the pool model is qemu64 and says so; TCG hosts do not lower a KVM pool', () => {
  const t = poolCpuModel([{ accel: 'tcg', cpuFlags: upTo('Broadwell-noTSX') }]);
  assert.equal(t.model, 'qemu64');
  assert.match(t.note, /^TCG/);
  const k = poolCpuModel([{ accel: 'kvm', cpuFlags: upTo('Haswell-noTSX') }, { accel: 'tcg', cpuFlags: [] }]);
  assert.deepEqual([k.model, k.accel], ['Haswell-noTSX', 'kvm']);
});
