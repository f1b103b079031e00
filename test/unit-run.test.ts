/**
 * xenod installed (scripts/install.sh into a DESTDIR) and run the way xenod.service runs it — systemd
 * is not PID 1 here, so the test plays the manager: ExecStart's argv and environment parsed from
 * the installed unit, a notification socket, the unit's stop (SIGTERM to the main process only,
 * KillMode=process). Then a host reboot as xendomains.service sees it: its ExecStop saves two running
 * guests, xenod stops, the next xenod restores both and their heartbeats go on. A guest whose disk
 * changed while it was saved is not restored (its save is kept, and xenod says so); the shutdown mode
 * shuts a guest down cleanly and boots it again at the next start.
 */
import assert from 'node:assert/strict';
import { appendFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { processGone } from '../src/host/proc.js';
import { GUEST } from './helpers/harness.js';
import { Installed } from './helpers/installed.js';

function cfg(name: string, disk: string): string {
  return [`name = "${name}"`, `kernel = "${GUEST.kernel}"`, `ramdisk = "${GUEST.ramdisk}"`, 'extra = "quiet"', 'memory = 128', 'vcpus = 1', `disk = [ 'file:${disk},xvda,w' ]`, ''].join('\n');
}

describe('xenod as its systemd unit runs it, and a host reboot through xendomains', () => {
  const inst = new Installed();
  before(async () => {
    await inst.install();
  });
  after(async () => {
    await inst.cleanup();
  });

  it('the unit is Type=notify, KillMode=process, and xenod reports READY=1 with its pid', async () => {
    const s = inst.unit('xenod.service');
    assert.equal(s.get('Service.Type')?.[0], 'notify');
    assert.equal(s.get('Service.KillMode')?.[0], 'process');
    assert.equal(s.get('Service.NotifyAccess')?.[0], 'all');
    const pid = await inst.startLikeTheUnit();
    const ready = inst.notifications.find((l) => l.split('|').includes('READY=1'))!;
    assert.ok(ready.split('|').includes(`MAINPID=${pid}`), ready);
    assert.match(ready, /STATUS=serving /);
    assert.match(await inst.ok(['list']), /^Domain-0/m, 'the API answers once READY=1 is sent');
  });

  it("the unit's stop leaves the guests running; the next start re-adopts them", async () => {
    const disk = inst.privateDisk('u1.ext4');
    await inst.ok(['create', writeCfg('u1', disk)]);
    await inst.waitConsole('u1', /heartbeat 2\r?\n/);
    const qemu = JSON.parse(await inst.ok(['list', 'u1', '--json']))[0].pid as number;
    await inst.stopLikeTheUnit();
    assert.ok(!processGone(qemu), 'QEMU survives the unit stop');
    const at = inst.lastHeartbeat('u1');
    const from = inst.consoleLog('u1').length;
    await inst.startLikeTheUnit();
    const row = JSON.parse(await inst.ok(['list', 'u1', '--json']))[0];
    assert.equal(row.pid, qemu);
    // Lines the guest printed while no xenod read its serial line are lost; the count goes on.
    await inst.waitConsole('u1', /heartbeat \d+\r?\n/, from);
    assert.ok(Number(/heartbeat (\d+)\r?\n/.exec(inst.consoleLog('u1').slice(from))![1]) > at);
  });

  function writeCfg(name: string, disk: string): string {
    const f = path.join(inst.dir, `${name}.cfg`);
    appendFileSync(f, cfg(name, disk));
    return f;
  }

  it("xendomains' ExecStop saves two running guests; the next start restores both, heartbeats going on", async () => {
    await inst.ok(['create', writeCfg('u2', inst.privateDisk('u2.ext4'))]);
    await inst.waitConsole('u2', /heartbeat 2\r?\n/);
    const stop = await inst.execOf('xendomains.service', 'ExecStop');
    assert.equal(stop.code, 0, stop.stderr);
    assert.match(stop.stdout, /^u1: saved: saved to .*host-stop\/u1\.save$/m);
    assert.match(stop.stdout, /^u2: saved: /m);
    const saved = { u1: inst.lastHeartbeat('u1'), u2: inst.lastHeartbeat('u2') };
    assert.deepEqual((JSON.parse(await inst.ok(['list', '--json'])) as Array<{ name: string }>).map((r) => r.name), ['Domain-0']);
    await inst.stopLikeTheUnit();
    const from = { u1: inst.consoleLog('u1').length, u2: inst.consoleLog('u2').length };

    await inst.startLikeTheUnit(); // the host is back
    const names = (JSON.parse(await inst.ok(['list', '--json'])) as Array<{ name: string; state: string }>).filter((r) => r.name !== 'Domain-0');
    assert.deepEqual(names.map((r) => [r.name, r.state]).sort(), [['u1', 'running'], ['u2', 'running']], 'restored before READY=1');
    for (const n of ['u1', 'u2'] as const) {
      await inst.waitConsole(n, /heartbeat \d+\r?\n/, from[n]);
      const first = Number(/heartbeat (\d+)\r?\n/.exec(inst.consoleLog(n).slice(from[n]))![1]);
      assert.equal(first, saved[n] + 1, `${n}'s heartbeat goes on from ${saved[n]}`);
    }
    assert.ok(!existsSync(path.join(inst.stateDir, 'host-stop', 'u1.save')), 'a restored save is removed');
  });

  it('a guest whose disk changed since the save is not restored: the save is kept and xenod says why', async () => {
    const stop = await inst.execOf('xendomains.service', 'ExecStop');
    assert.equal(stop.code, 0, stop.stderr);
    await inst.stopLikeTheUnit();
    appendFileSync(path.join(inst.dir, 'u2.ext4'), Buffer.alloc(4096)); // the disk is used elsewhere meanwhile
    await inst.startLikeTheUnit();
    const rows = (JSON.parse(await inst.ok(['list', '--json'])) as Array<{ name: string }>).map((r) => r.name);
    assert.ok(rows.includes('u1') && !rows.includes('u2'), rows.join(','));
    assert.ok(existsSync(path.join(inst.stateDir, 'host-stop', 'u2.save')), 'the save is kept');
    const dmesg = await inst.ok(['dmesg']);
    assert.match(dmesg, /u2 kept: not restored: disk .*u2\.ext4 changed size .* The save is kept in .*u2\.save/);
  });

  it('host-stop in shutdown mode shuts guests down cleanly, and the next start boots them again', async () => {
    const r = await inst.xeno(['host-stop', '-m', 'shutdown', '-t', '120', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const res = JSON.parse(r.stdout) as { mode: string; results: Array<{ name: string; action: string }> };
    assert.equal(res.mode, 'shutdown');
    assert.deepEqual(res.results.map((x) => [x.name, x.action]), [['u1', 'shut down']]);
    await inst.stopLikeTheUnit();
    const from = inst.consoleLog('u1').length;
    await inst.startLikeTheUnit();
    await inst.waitConsole('u1', /heartbeat 1\r?\n/, from);
    assert.match(await inst.ok(['dmesg']), /host start: u1 started: started as domain \d+/);
    await inst.ok(['destroy', 'u1']);
    await inst.stopLikeTheUnit();
  });
});
