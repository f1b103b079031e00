/**
 * The TCG region rule (tcg-regions.ts): QEMU 7.2's region count, the free regions a hot-plug needs,
 * and the buffer's figures read from a real QEMU's x-query-jit.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import type { Vm } from '../backend.js';
import { QmpClient } from './qmp.js';
import { HOTPLUG_TB_MB, parseJitSizes, queryJit, tcgFreeRegions, tcgRegionCount } from './tcg-regions.js';

const MIB = 1024 * 1024;

test("QEMU 7.2's region count: tb-size / 2 MiB, at most maxcpus x 8, at least maxcpus; one for a single vcpu", () => {
  assert.equal(tcgRegionCount(64 * MIB, 1), 1);
  assert.equal(tcgRegionCount(64 * MIB, 2), 16);
  assert.equal(tcgRegionCount(64 * MIB, 4), 32);
  assert.equal(tcgRegionCount(4 * MIB, 4), 4);
  assert.equal(tcgRegionCount(HOTPLUG_TB_MB * MIB, 2), 16);
});

test('a plug needs a region no thread holds and none filled since the last flush', () => {
  const cap = 64 * MIB; // 16 regions of 4 MiB at maxcpus 2
  assert.equal(tcgFreeRegions({ usedBytes: 0, capacityBytes: cap, maxCpus: 2, threads: 1 }), 15);
  assert.equal(tcgFreeRegions({ usedBytes: 30 * MIB, capacityBytes: cap, maxCpus: 2, threads: 1 }), 7);
  // into the last region: nothing left for a new vcpu thread (QEMU would abort)
  assert.equal(tcgFreeRegions({ usedBytes: 61 * MIB, capacityBytes: cap, maxCpus: 2, threads: 1 }), 0);
  // the same translated code in the hot-plug buffer leaves room
  assert.ok(tcgFreeRegions({ usedBytes: 61 * MIB, capacityBytes: HOTPLUG_TB_MB * MIB, maxCpus: 2, threads: 1 }) >= 10);
});

test('parses the buffer line of the JIT report', () => {
  assert.deepEqual(parseJitSizes('Translation buffer state:\ngen code size       1234/268353536\nTB count 5\n'), { usedBytes: 1234, capacityBytes: 268353536 });
  assert.equal(parseJitSizes('TCG not enabled'), undefined);
});

test('a real QEMU under TCG reports its buffer through x-query-jit', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'xeno-jit-'));
  const sock = path.join(dir, 'qmp.sock');
  const q = spawn('qemu-system-x86_64', ['-accel', `tcg,tb-size=${HOTPLUG_TB_MB}`, '-smp', '1,maxcpus=2', '-m', '64', '-display', 'none', '-nodefaults', '-S', '-qmp', `unix:${sock},server=on,wait=off`], { stdio: 'ignore' });
  try {
    for (let i = 0; i < 100 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 100));
    const qmp = await QmpClient.connect(sock);
    try {
      const jit = await queryJit({ command: (c: string, a?: Record<string, unknown>) => qmp.execute(c, a) } as unknown as Vm);
      assert.ok(jit, 'x-query-jit answered with the buffer line');
      // the capacity is the buffer less the regions' guard pages
      assert.ok(jit.capacityBytes > (HOTPLUG_TB_MB - 1) * MIB && jit.capacityBytes <= HOTPLUG_TB_MB * MIB, String(jit.capacityBytes));
      assert.equal(tcgFreeRegions({ ...jit, maxCpus: 2, threads: 1 }), 15);
    } finally {
      qmp.close();
    }
  } finally {
    q.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});
