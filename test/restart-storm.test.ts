/**
 * Restart storms on a real xenod: a guest whose kernel resets at once (it cannot find its init, and
 * `panic=-1` reboots immediately) is restarted with a growing back-off, only as often as the restart
 * limit allows, then left stopped with an event that says why and where to look; the back-off
 * survives kill -9 of xenod; a healthy guest beside it keeps running; after destroy and a fixed
 * config the guest starts normally. Also: the warning for a memory below kernel + initrd.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { DomainInfo } from '../src/model/api.js';
import { GUEST, TestDaemon, guestCfg, sleep } from './helpers/harness.js';

const STORM = { extra: 'quiet rdinit=/xeno-no-such-init panic=-1', on_reboot: 'restart', on_crash: 'restart', memory: 64 };

async function waitRow(d: TestDaemon, name: string, ok: (r: DomainInfo) => boolean, timeoutMs = 300_000): Promise<DomainInfo> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await d.row(name);
    if (r && ok(r)) return r;
    if (Date.now() > deadline) throw new Error(`${name} never got there: ${JSON.stringify(r)}`);
    await sleep(250);
  }
}

describe('restart storms', { timeout: 900_000 }, () => {
  // The daemon-wide limit is 3 restarts in 300 s; guest `storm` overrides it with restart_limit = 4.
  const d = new TestDaemon({ isolated: true, configText: '(xeno-restart-limit 3)\n(xeno-restart-window 300)\n(xeno-min-guest-mem 16)\n' });
  before(() => d.start());
  after(() => d.cleanup());

  it('a guest that resets at once is restarted only as the limit allows, then left stopped, saying why', async () => {
    await d.createGuest('calm');
    await d.waitConsole('calm', /heartbeat 2\r?\n/, 120_000);
    const hb0 = d.lastHeartbeat('calm');
    const t0 = Date.now();
    await d.createGuest('storm', { ...STORM, restart_limit: 4 });
    await d.createGuest('storm2', STORM);

    // Mid-storm, xenod is killed: the next one keeps counting (the history is in the record).
    await waitRow(d, 'storm', (r) => (r.restarts ?? 0) >= 2);
    await d.stop('SIGKILL');
    await d.start();

    const s = await waitRow(d, 'storm', (r) => r.restartStopped !== undefined);
    const s2 = await waitRow(d, 'storm2', (r) => r.restartStopped !== undefined);
    const elapsedS = (Date.now() - t0) / 1000;
    assert.equal(s.restarts, 4, 'the guest override (restart_limit = 4) holds across the xenod restart');
    assert.equal(s2.restarts, 3, 'the daemon limit (xeno-restart-limit 3)');
    for (const r of [s, s2]) {
      assert.equal(r.state, 'shutdown');
      assert.equal(r.stateFlags, '---s--');
      assert.equal(r.lastRestartReason, 'reboot');
    }
    // It stays stopped: no restart happens any more.
    await sleep(5000);
    assert.equal((await d.row('storm'))!.restarts, 4);
    assert.equal((await d.row('storm'))!.state, 'shutdown');

    const log = await d.ok(['dmesg']);
    // Counted from the QEMUs really spawned (one console separator each), not from the persisted
    // counter: a xenod that forgot the history would have restarted it again from zero.
    const spawns = (name: string) => [...d.consoleLog(name).matchAll(new RegExp(`----- xeno: ${name} run \\d+ started`, 'g'))].length;
    assert.equal(spawns('storm'), 5, 'storm ran 5 times: created, then restarted 4 times in all');
    assert.equal(spawns('storm2'), 4, 'storm2 ran 4 times');
    const m = /storm\(\d+\) restart-limit: storm was restarted 4 times in (\d+) s \(limit: 4 restarts in 300 s\): it is restarting too fast and is left shutdown; see its console log (\S+) and QEMU's log (\S+),/.exec(log);
    assert.ok(m, `the event says how many restarts in how long and where to look:\n${log}`);
    assert.match(m[2]!, /console\/storm\.log$/);
    assert.match(m[3]!, /run\/\d+\/qemu\.log$/);
    assert.match(log, /storm\(\d+\) restart-delayed: storm was restarted 1 time in the last 300 s: next restart in 1 s/);
    assert.match(log, /storm\(\d+\) restart-delayed: storm was restarted 2 times in the last 300 s: next restart in 2 s/);
    assert.match(d.log, /"level":40.*restart-limit/, 'a warning in xenod\'s log');
    // The console log keeps each short run, with a separator per run.
    const con = d.consoleLog('storm');
    for (let run = 1; run <= 5; run++) assert.match(con, new RegExp(`----- xeno: storm run ${run} started \\S+ \\(QEMU pid \\d+\\) -----`));

    // list -l shows the count and reason too; the default list keeps xm's columns.
    const long = JSON.parse(await d.ok(['list', '-l', 'storm'])) as Array<DomainInfo & { restarts: number }>;
    assert.equal(long[0]!.restarts, 4);
    assert.equal(long[0]!.lastRestartReason, 'reboot');
    assert.match((await d.ok(['list'])).split('\n')[0]!, /^Name\s+ID\s+Mem\s+VCPUs\s+State\s+Time\(s\)$/);

    // Meanwhile the healthy guest kept its heartbeat (generous: a quarter of the rate).
    const beats = d.lastHeartbeat('calm') - hb0;
    assert.ok(beats >= elapsedS / 4, `calm printed ${beats} heartbeats in ${elapsedS.toFixed(0)} s`);

    // destroy, fix the config, create again: it starts normally.
    await d.ok(['destroy', 'storm']);
    await d.ok(['destroy', 'storm2']);
    const cfg = d.writeCfg('storm', guestCfg('storm'));
    await d.ok(['create', cfg]);
    await d.waitConsole('storm', /heartbeat 2\r?\n/, 120_000);
    const fresh = (await d.row('storm'))!;
    assert.equal(fresh.state, 'running');
    assert.equal(fresh.restarts, undefined, 'a new domain has no restart history');
    await d.ok(['destroy', 'storm']);
    await d.ok(['destroy', 'calm']);
  });

  it('warns at create when memory is below the kernel plus the unpacked initrd', async () => {
    const small = d.writeCfg('tiny', guestCfg('tiny', { memory: 32 }));
    const r = await d.xeno(['create', '-n', small]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(`warning: tiny has memory = 32 MiB, less than its kernel plus initrd need to boot \\(kernel ${GUEST.kernel} [\\d.]+ MiB \\(its ELF segments\\) \\+ initrd ${GUEST.ramdisk} [\\d.]+ MiB unpacked \\(gzip\\) = [\\d.]+ MiB\\)`),
    );
    const ok = await d.xeno(['create', '-n', d.writeCfg('big', guestCfg('big'))]);
    assert.doesNotMatch(ok.stderr, /less than its kernel plus initrd/);
  });
});
