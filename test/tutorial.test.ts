/**
 * The lab in docs/tutorial.md, run as written: every ```sh block, in order, in one bash, inside a
 * private network world (a "host" namespace whose uplink is a veth to an "outside" namespace), so
 * the lab's NAT set-up never touches this machine's own network.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { DomainCgroups, cgroupInstanceName, detectCgroups } from '../src/host/cgroups.js';
import { REPO } from './helpers/harness.js';
import { fencedBlocks, runSteps } from './helpers/lab-script.js';
import { NetWorld } from './net/world.js';

test('docs/tutorial.md: every step of the lab works as written', { timeout: 600_000 }, async () => {
  const blocks = fencedBlocks(readFileSync(path.join(REPO, 'docs/tutorial.md'), 'utf8'), 'sh');
  assert.ok(blocks.length >= 8, 'the lab has its steps');
  const world = await NetWorld.create('lab');
  // The lab's own mktemp lands here, so whatever it leaves is ours to remove.
  const tmp = mkdtempSync(path.join(tmpdir(), 'xeno-lab-t-'));
  try {
    const { code, output } = await runSteps(world.host, blocks, tmp);
    assert.equal(code, 0, `the lab failed:\n${output.slice(-4000)}`);

    // What the steps showed, checked where it says something.
    assert.match(output, /accel\s+: (kvm|tcg)/);
    assert.match(output, /^web\s+\d+\s+256\s+1\s+[rb-]{6}/m, 'web listed with 256 MiB, 1 vcpu');
    assert.match(output, /vif\d+\.0/, 'a vifDOMID.0 backend exists on the host');
    assert.match(output, /inet 10\.\d+\.\d+\.\d+\/30/, 'the guest got its NAT address');
    assert.match(output, /^web\s+\d+\s+160\s/m, 'mem-set shows in the list');
    assert.match(output, /MemTotal:\s+\d+ kB/);
    assert.match(output, /^web\s+\d+\s+\d+\s+\d+\s+--p---/m, 'paused shows p');
    assert.match(output, /nproc; echo lab-done-\d+\r?\n2\r?$/m, 'nproc in the guest says 2 after vcpu-set');
    assert.match(output, /^vcpus = 2$/m, 'the stored config keeps the new vcpu count (not maxvcpus)');
    // under TCG the 2-vcpu web is copied paused though -l was asked (QEMU 7.2's MTTCG loses its writes otherwise), and the line says why
    const accel = /accel\s+: (kvm|tcg)/.exec(output)?.[1];
    assert.match(output, accel === 'tcg' ? /Migrated domain web to 127\.0\.0\.1:8002 \(offline, asked live: 2 vcpus under TCG: / : /Migrated domain web to 127\.0\.0\.1:8002 \(live/);
    assert.match(output, /Migrated domain web to 127\.0\.0\.1:8001 \(offline/);
    const backHome = output.slice(output.lastIndexOf('Migrated domain web'), output.lastIndexOf('### step'));
    assert.match(backHome, /^web\s+\d+\s+256\s+2\s/m, 'web is listed on the first host again');
    // web.log on the first host still holds the heartbeats from before the guest left: only one
    // above the last the guest printed on host2 was written after it came back
    const onHost2 = Number(/^on host2: heartbeat (\d+)$/m.exec(output)?.[1] ?? NaN);
    assert.ok(Number.isInteger(onHost2), 'the lab shows the last heartbeat on host2');
    const after = [...backHome.matchAll(/heartbeat (\d+)/g)].map((m) => Number(m[1]));
    assert.ok(after.some((n) => n > onHost2), `a heartbeat after ${onHost2} on the first host again: ${after.join(',')}`);
  } finally {
    await world.destroy();
    for (const lab of readdirSync(tmp)) {
      for (const host of ['state', 'host2']) {
        await new DomainCgroups(detectCgroups(), cgroupInstanceName(path.join(tmp, lab, host))).removeAll().catch(() => undefined);
      }
    }
    rmSync(tmp, { recursive: true, force: true });
  }
});
