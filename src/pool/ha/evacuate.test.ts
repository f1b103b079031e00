import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { HostRecord, RunningRecord } from '../member.js';
import type { PoolDefinition } from '../placement.js';
import { planEvacuation, runEvacuation } from './evacuate.js';

const host = (name: string, freeMiB: number, disabled = false): HostRecord => ({
  name, address: '10.0.0.1', relocationPort: 8002, apiPort: 8003, memTotalKiB: 8 << 20, memFreeKiB: freeMiB * 1024, cpus: 2,
  accel: 'tcg', cpuFlags: [], cpuModel: 'qemu64', disabled, guests: 0, version: '0', updatedAt: 0,
});
const def = (name: string, maxmem: number, antiAffinity: string[] = []): PoolDefinition => ({ name, cfgText: '', maxmem, ha: false, haPriority: 0, antiAffinity, definedOn: 'h1', definedAt: 0 });

describe('host-evacuate planning', () => {
  it('places every guest elsewhere counting memory down, skips disabled hosts and keeps anti_affinity', () => {
    const hosts = new Map([['h1', host('h1', 4096)], ['h2', host('h2', 600)], ['h3', host('h3', 400)], ['h4', host('h4', 9999, true)]]);
    const defs = new Map([['a', def('a', 512)], ['b', def('b', 256, ['db'])], ['c', def('c', 256)], ['big', def('big', 2048)], ['x', def('x', 64, ['db'])]]);
    const running = new Map<string, RunningRecord>([['x', { host: 'h3', domid: 1, since: 0 }]]);
    const plan = planEvacuation('h1', [{ name: 'a', maxmem: 512 }, { name: 'b', maxmem: 256 }, { name: 'c', maxmem: 256 }, { name: 'big', maxmem: 2048 }], hosts, running, defs);
    assert.deepEqual(plan.moves, [{ name: 'a', to: 'h2' }, { name: 'c', to: 'h3' }]);
    assert.deepEqual(plan.stuck.map((s) => s.name), ['big', 'b']);
    assert.match(plan.stuck[0]!.why, /no host of the pool can start big/);
    assert.match(plan.stuck[1]!.why, /anti_affinity|MiB free/);
  });

  it('runs at most `parallel` migrations at once, and a failed one is listed, not lost', async () => {
    let now = 0;
    let peak = 0;
    const r = await runEvacuation({ moves: ['a', 'b', 'c', 'd', 'e'].map((n) => ({ name: n, to: 'h2' })), stuck: [] }, 2, async (m) => {
      peak = Math.max(peak, ++now);
      await new Promise((res) => setTimeout(res, 20));
      now--;
      if (m.name === 'c') throw new Error('target refused');
    });
    assert.equal(peak, 2);
    assert.deepEqual(r.moved.map((m) => m.name).sort(), ['a', 'b', 'd', 'e']);
    assert.deepEqual(r.stuck, [{ name: 'c', why: 'migration to h2 failed: target refused' }]);
  });
});
