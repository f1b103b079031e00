/**
 * Crash consistency on a real xenod with real guests: xenod is killed (SIGKILL, by the test-only
 * XENO_TEST_CRASH_AT hook at exact points, or from outside) in the middle of create, destroy,
 * restart, mem-set and vcpu-set, or while guests reboot, power off or panic, or while a QEMU does not
 * answer; the next xenod must converge: every QEMU that runs is a listed domain, no domain is left
 * starting/dying/saving, and destroy works.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { QmpClient } from '../src/hypervisor/qemu/qmp.js';
import { qemuPaths } from '../src/hypervisor/qemu/qemu-backend.js';
import { processGone } from '../src/host/proc.js';
import type { DomainDetail, DomainInfo } from '../src/model/api.js';
import { GUEST, TestDaemon, sleep } from './helpers/harness.js';

const TRANSITIONAL = ['starting', 'dying', 'saving', 'migrating'];

/** Every QEMU of the daemon's state dir is a listed domain; no domain is half-way; returns the rows. */
async function assertConverged(d: TestDaemon): Promise<DomainInfo[]> {
  const rows = (await d.rows()).filter((r) => r.id !== 0);
  const listed = new Set(rows.map((r) => r.pid));
  for (const pid of d.qemusOnHost()) assert.ok(listed.has(pid), `QEMU pid ${pid} runs but no domain lists it: ${JSON.stringify(rows)}`);
  for (const r of rows) assert.ok(!TRANSITIONAL.includes(r.state), `${r.name} is left ${r.state}`);
  return rows;
}

/** Run `action` on a xenod that kills itself at `point`, then start a normal xenod. */
async function crashAt(d: TestDaemon, point: string, action: () => Promise<unknown>): Promise<void> {
  await d.stop();
  await d.start({ env: { XENO_TEST_CRASH_AT: point } });
  await action().catch(() => undefined);
  await d.waitExit();
  await d.start();
}

/** Wait until the QEMU of a run dir reports the QMP status (the daemon being down). */
async function waitQemuStatus(runDir: string, status: string, timeoutMs = 90_000): Promise<void> {
  const qmp = await QmpClient.connect(qemuPaths(runDir).qmp, 10_000);
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = await qmp.execute<{ status: string }>('query-status');
      if (s.status === status) return;
      if (Date.now() > deadline) throw new Error(`QEMU of ${runDir} still ${s.status}, not ${status}`);
      await sleep(200);
    }
  } finally {
    qmp.close();
  }
}

/** Type a line on a guest's serial line directly (xenod is down, so the socket is free). */
async function typeOnSerial(runDir: string, line: string): Promise<void> {
  const s = net.createConnection(qemuPaths(runDir).serial);
  await new Promise<void>((resolve, reject) => {
    s.once('connect', resolve);
    s.once('error', reject);
  });
  s.write(`\n${line}\n`);
  await sleep(500);
  s.destroy();
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}

describe('xenod killed at any instant of an operation converges at its next start', { timeout: 1_200_000 }, () => {
  const d = new TestDaemon({ isolated: true });
  before(() => d.start());
  after(() => d.cleanup());

  const points: Array<[string, boolean]> = [
    // [point, whether the domain exists afterwards]
    ['create:recorded', false],
    ['boot:plugged', false],
    ['boot:spawned', true],
    ['boot:attached', true],
    ['boot:launched', true],
  ];
  for (const [point, kept] of points) {
    it(`create killed at ${point}: ${kept ? 'the started QEMU is adopted and listed' : 'nothing is left'}`, async () => {
      const name = `c-${point.replace(/\W/g, '-')}`;
      const cfg = d.writeCfg(name, `name = "${name}"\nkernel = "${GUEST.kernel}"\nramdisk = "${GUEST.ramdisk}"\nextra = "quiet"\nmemory = 128\nmaxmem = 160\n`);
      await crashAt(d, point, () => d.xeno(['create', cfg]));
      const rows = await assertConverged(d);
      const r = rows.find((x) => x.name === name);
      if (!kept) {
        assert.equal(r, undefined, `${name} should be gone`);
        assert.deepEqual(d.qemusOnHost(), [], 'no QEMU is left');
        assert.equal((await d.rows()).length, 1, 'only Domain-0');
        return;
      }
      assert.ok(r, `${name} is listed`);
      assert.equal(r.state, 'running');
      assert.equal(r.memory, 128);
      await d.waitConsole(name, /heartbeat 2\r?\n/, 120_000);
      const detail = await d.client.get<DomainDetail>(`/v1/domains/${name}`);
      assert.ok(detail.balloonActual === undefined || detail.balloonActual <= 129, 'the balloon target of the start was applied');
      await d.ok(['destroy', name]);
      assert.equal(processGone(r.pid!), true);
      await assertConverged(d);
    });
  }

  for (const point of ['destroy:dying', 'destroy:killed']) {
    it(`destroy killed at ${point}: the destroy is finished`, async () => {
      const name = `d-${point.split(':')[1]}`;
      await d.createGuest(name);
      const r = (await d.row(name))!;
      await crashAt(d, point, () => d.xeno(['destroy', name]));
      await assertConverged(d);
      assert.equal(await d.row(name), undefined);
      assert.equal(processGone(r.pid!), true);
      assert.equal(existsSync(path.join(d.stateDir, 'run', String(r.id))), false, 'its run dir is gone');
      assert.match(await d.ok(['dmesg']), new RegExp(`domain ${name} \\(${r.id}\\) destroyed`));
    });
  }

  it('a restart (on_reboot) killed between teardown and boot is booted again', async () => {
    await d.createGuest('rst');
    await d.waitConsole('rst', /xeno-guest: up/, 120_000);
    const before = (await d.row('rst'))!;
    await crashAt(d, 'restart:torn-down', () => d.xeno(['reboot', 'rst']));
    const rows = await assertConverged(d);
    const r = rows.find((x) => x.name === 'rst');
    assert.ok(r, 'rst is still a domain');
    assert.equal(r.id, before.id);
    assert.notEqual(r.pid, before.pid, 'a fresh QEMU');
    assert.equal(processGone(before.pid!), true);
    await d.ok(['destroy', 'rst']);
  });

  it('mem-set killed after the balloon command: balloon and stored config agree again', async () => {
    await d.createGuest('mem', { maxmem: 160 });
    await d.waitConsole('mem', /heartbeat 2\r?\n/, 120_000);
    await crashAt(d, 'mem-set:ballooned', () => d.xeno(['mem-set', 'mem', '96']));
    await assertConverged(d);
    const stored = (await d.row('mem'))!.memory;
    // Whatever the record kept, the guest's balloon goes to it.
    await waitFor('the balloon to reach the stored target', async () => {
      const det = await d.client.get<DomainDetail>('/v1/domains/mem');
      return det.balloonActual !== undefined && Math.abs(det.balloonActual - stored) <= 1 ? true : undefined;
    });
    await d.ok(['destroy', 'mem']);
  });

  it('vcpu-set killed after the hot-plug: the stored config has the vcpus QEMU has', async () => {
    await d.createGuest('cpu', { maxvcpus: 2 });
    await d.waitConsole('cpu', /heartbeat 2\r?\n/, 120_000);
    await crashAt(d, 'vcpu-set:plugged', () => d.xeno(['vcpu-set', 'cpu', '2']));
    await assertConverged(d);
    const det = await d.client.get<DomainDetail>('/v1/domains/cpu');
    assert.equal(det.vcpus, 2, 'QEMU has 2 vcpus');
    assert.equal(det.config.vcpus, 2, 'and so does the stored config (a restart keeps them)');
    await d.ok(['destroy', 'cpu']);
  });

  it('save killed once the file is complete: the save is finished, no partial file, the file restores', async () => {
    await d.createGuest('sv');
    await d.waitConsole('sv', /heartbeat 2\r?\n/, 120_000);
    const r = (await d.row('sv'))!;
    const file = path.join(d.dir, 'sv.save');
    await crashAt(d, 'save:written', () => d.xeno(['save', 'sv', file]));
    await assertConverged(d);
    assert.equal(await d.row('sv'), undefined, 'the save was completed: the domain is gone');
    assert.equal(processGone(r.pid!), true);
    assert.ok(existsSync(file));
    assert.ok(!existsSync(`${file}.partial`));
    await d.ok(['restore', file]);
    assert.equal((await d.row('sv'))!.state, 'running');
    await d.ok(['save', 'sv', file]);
  });

  it('restore killed while its QEMU waits for the state: that QEMU is destroyed, the file restores later', async () => {
    const file = path.join(d.dir, 'sv.save');
    await crashAt(d, 'boot:launched', () => d.xeno(['restore', file]));
    await assertConverged(d);
    assert.equal(await d.row('sv'), undefined, 'no half-restored domain');
    assert.match(await d.ok(['dmesg']), /sv\(\d+\) lost: sv \(\d+\): its restore or incoming migration was cut short/);
    await d.ok(['restore', file]);
    assert.equal((await d.row('sv'))!.state, 'running');
    await d.ok(['destroy', 'sv']);
  });
});

describe('guests that stop while xenod is down get their on_reboot / on_poweroff / on_crash', { timeout: 900_000 }, () => {
  const d = new TestDaemon({ isolated: true });
  before(() => d.start());
  after(() => d.cleanup());

  it('a guest rebooting while xenod is down is restarted (on_reboot=restart), not destroyed', async () => {
    await d.createGuest('rb', { on_reboot: 'restart' });
    await d.waitConsole('rb', /xeno-guest: up/, 120_000);
    const before = (await d.row('rb'))!;
    const runDir = path.join(d.stateDir, 'run', String(before.id));
    await d.stop('SIGKILL');
    await typeOnSerial(runDir, 'reboot -f');
    await waitQemuStatus(runDir, 'shutdown');
    await d.start();
    const r = await waitFor('rb restarted', async () => {
      const x = await d.row('rb');
      return x && x.state === 'running' && x.pid !== before.pid ? x : undefined;
    });
    assert.equal(r.id, before.id);
    assert.equal(processGone(before.pid!), true);
    assert.match(await d.ok(['dmesg']), /rb\(\d+\) reboot: guest rebooted: on_reboot=restart/);
    await d.waitConsole('rb', /run 2 started/);
    await assertConverged(d);
    await d.ok(['destroy', 'rb']);
  });

  it('a poweroff while xenod is down gets on_poweroff (destroy), a panic on_crash (preserve)', async () => {
    await d.createGuest('po');
    await d.createGuest('pa', { on_crash: 'preserve' });
    await d.waitConsole('po', /xeno-guest: up/, 120_000);
    await d.waitConsole('pa', /xeno-guest: up/, 120_000);
    const po = (await d.row('po'))!;
    const pa = (await d.row('pa'))!;
    await d.stop('SIGKILL');
    const poDir = path.join(d.stateDir, 'run', String(po.id));
    const paDir = path.join(d.stateDir, 'run', String(pa.id));
    await typeOnSerial(poDir, 'poweroff -f');
    await typeOnSerial(paDir, 'echo 1 > /proc/sys/kernel/sysrq; echo c > /proc/sysrq-trigger');
    await waitQemuStatus(poDir, 'shutdown');
    await waitQemuStatus(paDir, 'guest-panicked');
    await d.start();
    await waitFor('po destroyed', async () => ((await d.row('po')) ? undefined : true));
    assert.equal((await d.row('pa'))!.state, 'crashed');
    assert.equal((await d.row('pa'))!.stateFlags, '----c-');
    const log = await d.ok(['dmesg']);
    assert.match(log, /po\(\d+\) poweroff: guest powered off: on_poweroff=destroy/);
    assert.match(log, /pa\(\d+\) crash: guest crashed: on_crash=preserve/);
    await assertConverged(d);
    await d.ok(['destroy', 'pa']);
  });

  it('SIGTERM of xenod keeps the guests running, and the next xenod re-adopts them', async () => {
    await d.createGuest('term');
    await d.waitConsole('term', /heartbeat 2\r?\n/, 120_000);
    const before = (await d.row('term'))!;
    await d.stop('SIGTERM');
    assert.equal(processGone(before.pid!), false);
    await d.start();
    const r = (await d.row('term'))!;
    assert.equal(r.pid, before.pid);
    assert.equal(r.state, 'running');
    const hb = d.lastHeartbeat('term');
    await d.waitBeatsPast('term', hb);
    await d.ok(['destroy', 'term']);
  });
});

describe('a QEMU slow to answer QMP at adoption is kept, not forgotten', { timeout: 600_000 }, () => {
  const d = new TestDaemon({ isolated: true });
  before(() => d.start());
  after(async () => {
    for (const pid of d.qemusOnHost()) {
      try {
        process.kill(pid, 'SIGCONT');
      } catch {
        /* gone */
      }
    }
    await d.cleanup();
  });

  it('is listed as unresponsive, adopted fully once it answers, and destroy works meanwhile', async () => {
    await d.createGuest('slow');
    await d.createGuest('stuck');
    await d.waitConsole('slow', /heartbeat 2\r?\n/, 120_000);
    const slow = (await d.row('slow'))!;
    const stuck = (await d.row('stuck'))!;
    await d.stop('SIGKILL');
    process.kill(slow.pid!, 'SIGSTOP');
    process.kill(stuck.pid!, 'SIGSTOP');
    await d.start();
    const rows = await assertConverged(d);
    const s = rows.find((r) => r.name === 'slow');
    assert.ok(s, 'slow is still a domain');
    assert.equal(s.pid, slow.pid);
    assert.equal(s.qmp, 'unresponsive');
    assert.ok(rows.find((r) => r.name === 'stuck'));
    assert.match(await d.ok(['dmesg']), /slow\(\d+\) adopt-pending: .*does not answer QMP; kept as running/);
    const paused = await d.xeno(['pause', 'slow']);
    assert.notEqual(paused.code, 0);
    assert.match(paused.stderr, /does not answer QMP/);

    // destroy of a QEMU that does not answer: killed by pid
    await d.ok(['destroy', 'stuck']);
    assert.equal(await d.row('stuck'), undefined);
    assert.equal(processGone(stuck.pid!), true);

    process.kill(slow.pid!, 'SIGCONT');
    await waitFor('slow adopted', async () => ((await d.row('slow'))?.qmp === undefined ? true : undefined));
    const hb = d.lastHeartbeat('slow');
    await d.waitBeatsPast('slow', hb);
    assert.match(await d.ok(['dmesg']), /re-adopted slow \(\d+\), QEMU pid \d+, running after \d+ s without QMP/);
    await assertConverged(d);
    await d.ok(['destroy', 'slow']);
  });
});
