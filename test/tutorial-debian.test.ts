/**
 * Chapter 10 of docs/tutorial.md, run as written: its ```bash blocks, after chapter 0's ```sh
 * blocks (the lab's helpers; its setup.sh is the suite's own first step), in one bash inside a
 * private network world, as test/tutorial.test.ts runs chapters 0 to 9. A real Debian guest made by create-image (its
 * debootstrap base cached in /var/cache/xeno/bases across runs) boots through pygrub, answers HTTP
 * and ssh and onlines a hot-added vcpu. (Its reboot and shutdown through the agent, save/restore
 * and migration are checked by test/images.test.ts on its own such guest: the chapter only names
 * them, and destroys its guest at the end.)
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { DomainCgroups, cgroupInstanceName, detectCgroups } from '../src/host/cgroups.js';
import { REPO } from './helpers/harness.js';
import { chapter, fencedBlocks, prepareSteps, runSteps } from './helpers/lab-script.js';
import { NetWorld } from './net/world.js';

// A cold debootstrap (the first run on a machine) takes tens of minutes on a loaded host.
test('docs/tutorial.md chapter 10: a real Debian guest from create-image, as written', { timeout: 3_000_000 }, async () => {
  const md = readFileSync(path.join(REPO, 'docs/tutorial.md'), 'utf8');
  const prepare = prepareSteps(md);
  const debian = fencedBlocks(chapter(md, 10), 'bash');
  assert.ok(prepare.length >= 2 && debian.length >= 4, 'chapter 0 and chapter 10 have their steps');
  const world = await NetWorld.create('lab10');
  const tmp = mkdtempSync(path.join(tmpdir(), 'xeno-lab10-t-'));
  try {
    const { code, output } = await runSteps(world.host, [...prepare, ...debian], tmp);
    assert.equal(code, 0, `chapter 10 failed:\n${output.slice(-4000)}`);

    assert.match(output, /^bootloader = "pygrub"$/m, "create-image's xl.cfg boots through pygrub");
    assert.match(output, /^0\s+0\s+\S+\s+0\s+4\s+vif\d+\.0\s+nat\s+10\.0\.\d+\.\d+ \(dhcp\)/m, 'network-list shows the leased NAT address');
    assert.match(output, /"os": "Debian GNU\/Linux 12/);
    assert.match(output, /<title>Welcome to nginx!<\/title>/i);
    assert.match(output, /"guestOnline": 2/);
    assert.match(output, /^2$/m, 'nproc in the guest says 2 after vcpu-set');
    assert.match(output, /^(running|degraded)$/m, "systemd's start-up ended");
    assert.match(output, /^2\nactive$/m, 'nginx is active, after nproc');
  } finally {
    await world.destroy();
    for (const lab of readdirSync(tmp)) {
      await new DomainCgroups(detectCgroups(), cgroupInstanceName(path.join(tmp, lab, 'state'))).removeAll().catch(() => undefined);
    }
    rmSync(tmp, { recursive: true, force: true });
  }
});
