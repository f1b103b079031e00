/**
 * The README's two commands in one clone, in either order: the demo (scripts/demo.sh, run contained
 * in a temp root and a network namespace of its own) leaves its guest running on an image of its
 * own, and a test guest then boots on the repository's image and on a private copy, with no QEMU
 * lock conflict ("Failed to get shared "write" lock" was the failure when the demo used
 * guest/out/disk.ext4 read-write).
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, describe, it } from 'node:test';
import { DomainCgroups, cgroupInstanceName, detectCgroups } from '../src/host/cgroups.js';
import { GUEST, REPO, TestDaemon, sleep } from './helpers/harness.js';

const execFileP = promisify(execFile);

describe('the demo and the tests side by side', () => {
  const root = mkdtempSync(path.join(tmpdir(), 'xeno-demo-t-'));
  const netns = `xd-${process.pid}`;
  const state = path.join(root, 'var/lib/xeno');
  const env = { ...process.env, XENO_SOCKET: path.join(root, 'run/xeno/xenod.sock') };
  const xeno = (args: string[]) => execFileP(path.join(root, 'usr/bin/xeno'), args, { env });
  const d = new TestDaemon({ isolated: true });

  after(async () => {
    await xeno(['destroy', 'demo']).catch(() => undefined);
    try {
      process.kill(Number(readFileSync(path.join(state, 'xenod.pid'), 'utf8')), 'SIGKILL');
    } catch {
      /* not running */
    }
    for (const e of readdirSync('/proc')) {
      try {
        const argv = readFileSync(`/proc/${e}/cmdline`, 'utf8');
        if (argv.startsWith('qemu-system') && argv.includes(state + '/')) process.kill(Number(e), 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    await sleep(300);
    await new DomainCgroups(detectCgroups(), cgroupInstanceName(state)).removeAll().catch(() => undefined);
    await execFileP('ip', ['netns', 'del', netns]).catch(() => undefined);
    rmSync(root, { recursive: true, force: true });
    await d.cleanup();
  });

  it('demo.sh installs xeno, starts xenod and its guest on its own image; a test guest then runs too', async () => {
    await execFileP('ip', ['netns', 'add', netns]);
    await execFileP('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
    const child = spawn('ip', ['netns', 'exec', netns, 'bash', 'scripts/demo.sh'], {
      cwd: REPO, env: { ...process.env, XENO_DEMO_ROOT: root, XENO_DEMO_SETUP: '0', XENO_SOCKET: '' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (x) => (out += String(x)));
    child.stderr.on('data', (x) => (out += String(x)));
    assert.equal(await new Promise((r) => child.on('close', r)), 0, out.slice(-3000));
    assert.match(out, /^demo\s+\d+\s+128\s+1\s+-?[rb]-+\s/m, 'the demo shows its running guest');
    assert.match(out, /heartbeat \d+/);
    const cfg = JSON.parse((await xeno(['config', 'demo', '--json'])).stdout) as { disks: Array<{ target: string; access: string }>; kernel: string };
    assert.equal(cfg.disks[0]!.target, path.join(root, 'var/lib/xeno-images/demo.ext4'));
    assert.equal(cfg.disks[0]!.access, 'rw');
    assert.ok(!cfg.kernel.startsWith(REPO), 'nothing of the checkout is held by the demo guest');
    assert.match((await xeno(['list', '--all'])).stdout, /^demo\s/m);

    // The tests' guests: on the repository's image (read-only) and on a private copy (read-write).
    await d.start();
    await d.createGuest('t-ro', { disk: `[ 'file:${GUEST.disk},xvda,r' ]` });
    await d.createGuest('t-rw', { disk: `[ 'file:${d.privateDisk('t-rw.ext4')},xvda,w' ]` });
    for (const n of ['t-ro', 't-rw']) await d.waitConsole(n, /xeno-guest: mounted \/dev\/vda/, 120_000);
    const demo = JSON.parse((await xeno(['list', 'demo', '--json'])).stdout) as Array<{ state: string }>;
    assert.equal(demo[0]!.state, 'running', 'the demo guest still runs');
  });
});
