/**
 * Chapter 10 of docs/tutorial.md, run as written: its ```bash blocks, after chapter 0's ```sh
 * blocks (the lab's helpers; its setup.sh is the suite's own first step), in one bash.
 * scripts/lab-pool builds three hosts (namespaces, a 3-member etcd with TLS, a xenod each) with its
 * state file in the test's own directory; an HA guest is defined for the pool, placed, evacuated
 * live, and restarted on a survivor once its host's power is cut; the lab goes down at the end,
 * and again here (by its state file) if the chapter failed half-way.
 *
 * Not inside a NetWorld as the other chapters: `ip netns exec` makes the steps' mount namespace a
 * slave of this one, so the lab's namespaces (bind mounts under /run/netns) would be seen only
 * there, and a clean-up from here after a failure would find none (their xenods left running).
 * The lab sends nothing outside its own namespaces; the steps talk to the xenods by unix socket.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { REPO } from './helpers/harness.js';
import { chapter, fencedBlocks, prepareSteps, runSteps } from './helpers/lab-script.js';

test('docs/tutorial.md chapter 10: a pool of three hosts, evacuation and HA restart, as written', { timeout: 900_000 }, async () => {
  const md = readFileSync(path.join(REPO, 'docs/tutorial.md'), 'utf8');
  const prepare = prepareSteps(md);
  const pool = fencedBlocks(chapter(md, 10), 'bash');
  assert.ok(pool.length >= 5, 'chapter 10 has its steps');
  const tmp = mkdtempSync(path.join(tmpdir(), 'xeno-lab11-t-'));
  // never the machine's own lab (/run/xeno-lab-pool.json): the steps inherit this
  const state = path.join(tmp, 'lab-pool.json');
  const saved = process.env.XENO_LAB_POOL_STATE;
  process.env.XENO_LAB_POOL_STATE = state;
  try {
    const { code, output } = await runSteps(undefined, [...prepare, ...pool], tmp);
    assert.equal(code, 0, `chapter 10 failed:\n${output.slice(-4000)}`);
    const step = (n: number) => output.slice(output.indexOf(`### step ${prepare.length + n}\n`), output.indexOf(`### step ${prepare.length + n + 1}\n`));

    assert.match(step(1), /^host1\s+up\s+10\.197\.0\.1/m);
    assert.match(step(1), /^host3\s+up\s+10\.197\.0\.3/m);
    assert.match(step(2), /Started domain db \(id=\d+\) on host2/);
    assert.match(step(2), /^db\s+host2\s+\d+/m, 'list --pool shows db on host2');
    assert.match(step(3), /^db: moved to host1 \(/m, 'evacuated to host1, host3 being disabled');
    assert.match(step(3), /^db\s+host1\s+\d+/m);
    const after = step(4);
    assert.match(after, /^db\s+host[23]\s+\d+/m, 'db runs again on a survivor');
    assert.match(after, /^host1\s+down/m, 'host-list shows the dead host down');
    assert.match(after, /^db on host[23]: heartbeat \d+$/m, "db's heartbeat on its new host");
    assert.match(output.slice(output.lastIndexOf('### step')), /pool lab down/);
    assert.ok(!existsSync(state), 'lab-pool down removed its state file');
  } finally {
    if (existsSync(state)) execFileSync(path.join(REPO, 'scripts/lab-pool'), ['down'], { stdio: 'ignore' });
    if (saved === undefined) delete process.env.XENO_LAB_POOL_STATE;
    else process.env.XENO_LAB_POOL_STATE = saved;
    rmSync(tmp, { recursive: true, force: true });
  }
});
