/**
 * The foundation end to end: a real xenod, real guests from cfg files, the real CLI.
 * create -> heartbeat -> list -> console -> kill -9 + re-adopt -> shutdown (guest's own poweroff) ->
 * destroy, lifecycle actions, and every error case leaving nothing behind.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { processGone } from '../src/host/proc.js';
import type { DomainInfo } from '../src/model/api.js';
import { GUEST, TestDaemon, guestCfg, sleep } from './helpers/harness.js';

type ListRow = DomainInfo & { pid: number };

describe('domain lifecycle on a real xenod', () => {
  const d = new TestDaemon({ isolated: true });
  before(() => d.start());
  after(() => d.cleanup());

  it('creates a guest that boots and is listed like xm list', async () => {
    const id = await d.createGuest('web1', { extra: 'quiet xeno.hostname=web1' });
    assert.ok(id >= 1);
    await d.waitConsole('web1', /xeno-guest: up hostname=web1/);
    await d.waitConsole('web1', /heartbeat 2/);
    const table = await d.ok(['list']);
    const lines = table.trim().split('\n');
    assert.match(lines[0]!, /^Name\s+ID\s+Mem\s+VCPUs\s+State\s+Time\(s\)$/);
    assert.match(lines[1]!, /^Domain-0\s+0\s+\d+\s+\d+\s+r-----\s+[\d.]+$/);
    assert.match(table, new RegExp(`web1\\s+${id}\\s+128\\s+1\\s+[rb-]{6}\\s+[\\d.]+`));
    const rows = JSON.parse(await d.ok(['list', '--json'])) as ListRow[];
    const web = rows.find((r) => r.name === 'web1')!;
    assert.equal(web.state, 'running');
    assert.ok(web.pid && web.pid > 0);
    assert.equal(web.memory, 128);
    assert.equal(web.vcpus, 1);
    assert.ok(web.cpuTime > 0, 'cpu time comes from the vcpu threads');
    const long = JSON.parse(await d.ok(['list', '-l', 'web1'])) as Array<{ config: { name: string }; machineType: string }>;
    assert.equal(long[0]!.config.name, 'web1');
    assert.match(long[0]!.machineType, /^pc-i440fx-\d+\.\d+$/, 'a versioned machine type, not the alias pc');
    assert.equal((await d.ok(['domid', 'web1'])).trim(), String(id));
    assert.equal((await d.ok(['domname', String(id)])).trim(), 'web1');
    assert.match(await d.ok(['uptime', 'web1']), /web1\s+\d+\s+\d+:\d\d:\d\d/);
    assert.match(await d.ok(['li']), /web1/, 'an unambiguous prefix of a command works, as in xl');
  });

  it('streams the console without a TTY and runs commands typed on it', async () => {
    const out = await d.guestRun('web1', 'hostname; cat /proc/cmdline');
    assert.match(out, /^web1$/m);
    assert.match(out, /console=ttyS0/);
    // the guest computes 42: the serial echo of the typed line holds only "6*7", so a 42 alone on a
    // line proves the shell ran the command
    const typed = /echo \$\(\(6\*7\)\)/;
    const ran = /^42\r?$/m;
    const beat = /heartbeat \d+/;
    // Detached once all three showed (the console itself never ends), or after 60 s.
    const r = await d.xeno(['console', 'web1'], { input: 'echo $((6*7))\n', timeoutMs: 60_000, until: (o) => typed.test(o) && ran.test(o) && beat.test(o) });
    assert.match(r.stdout, typed, 'the typed line reached the guest');
    assert.match(r.stdout, ran, 'the guest shell ran it');
    assert.match(r.stdout, beat);
  });

  it('survives kill -9 of the daemon: the guest keeps running and is re-adopted with the same id', async () => {
    const before = JSON.parse(await d.ok(['list', '--json', 'web1'])) as ListRow[];
    const hb = d.lastHeartbeat('web1');
    await d.stop('SIGKILL');
    await sleep(1500);
    assert.equal(processGone(before[0]!.pid!), false, 'QEMU outlives the daemon');
    await d.start();
    const after = JSON.parse(await d.ok(['list', '--json', 'web1'])) as ListRow[];
    assert.equal(after[0]!.id, before[0]!.id);
    assert.equal(after[0]!.pid, before[0]!.pid);
    // the console works again after the restart, and the guest kept counting (what it printed while
    // no daemon read its serial line is lost: any later heartbeat above the last one seen will do)
    const mark = d.consoleLog('web1').length;
    const beats = () => [...d.consoleLog('web1').slice(mark).matchAll(/heartbeat (\d+)\r?\n/g)].map((m) => Number(m[1]));
    for (let i = 0; !beats().some((n) => n > hb); i++) {
      assert.ok(i < 600, `no heartbeat above ${hb} after the restart: ${beats().join(',')}`);
      await sleep(100);
    }
    assert.match(await d.guestRun('web1', 'echo alive-after-restart'), /alive-after-restart/);
  });

  it('shuts down gracefully through the guest’s own poweroff, and -w waits for it', async () => {
    const [row] = JSON.parse(await d.ok(['list', '--json', 'web1'])) as ListRow[];
    await d.ok(['shutdown', '-w', 'web1']);
    assert.match(d.consoleLog('web1'), /xeno-guest: poweroff/, 'the guest ran its own shutdown');
    assert.doesNotMatch(await d.ok(['list']), /web1/);
    assert.equal(processGone(row!.pid!), true);
    assert.match(await d.ok(['dmesg']), /web1\(\d+\) poweroff: guest powered off: on_poweroff=destroy/);
  });

  it('destroy returns only once QEMU has exited; ids are never reused', async () => {
    const id1 = await d.createGuest('tmp1');
    const [row] = JSON.parse(await d.ok(['list', '--json', 'tmp1'])) as ListRow[];
    await d.ok(['destroy', 'tmp1']);
    assert.equal(processGone(row!.pid!), true);
    const id2 = await d.createGuest('tmp1');
    assert.ok(id2 > id1, `new id ${id2} > old id ${id1}`);
    await d.ok(['destroy', String(id2)]);
  });

  it('honours on_reboot=restart and on_crash=preserve', async () => {
    await d.createGuest('life', { on_crash: 'preserve', on_reboot: 'restart' });
    await d.waitConsole('life', /heartbeat 2/);
    const id = (await d.ok(['domid', 'life'])).trim();
    await d.ok(['reboot', 'life']);
    // the guest shuts down cleanly, then xenod starts it again: a second boot on the same console
    await d.waitConsole('life', /xeno-guest: poweroff[\s\S]*xeno-guest: up/);
    assert.equal((await d.ok(['domid', 'life'])).trim(), id);
    // crash it: the kernel panics, pvpanic tells QEMU, xenod preserves it as crashed
    const s = await d.client.upgrade('/v1/domains/life/console', 'xeno-console');
    s.write('echo c > /proc/sysrq-trigger\n');
    s.destroy();
    for (let i = 0; i < 200; i++) {
      const [r] = JSON.parse(await d.ok(['list', '--json', 'life'])) as ListRow[];
      if (r!.state === 'crashed') break;
      await sleep(100);
    }
    assert.match(await d.ok(['list', 'life']), /life\s+\d+\s+128\s+1\s+----c-/);
    await d.ok(['destroy', 'life']);
  });

  it('creates from an xm-style file with command-line overrides, and dry-runs with -n', async () => {
    const disk = d.privateDisk('xm.ext4');
    const xm = d.writeCfg('xm', [
      '# an old xm config: plain assignments',
      `kernel = "${GUEST.kernel}"`,
      `ramdisk = "${GUEST.ramdisk}"`,
      'memory = 128',
      'name = "xmguest"',
      "vif = [ '' ]",
      `disk = [ 'file:${disk},xvda,r' ]`,
      'root = "/dev/xvda ro"',
      'extra = "quiet hostname=xmguest"',
    ].join('\n'));
    const dry = await d.xeno(['create', '-n', xm, 'name=dry1', 'memory=96']);
    assert.equal(dry.code, 0, dry.stderr);
    const cfg = JSON.parse(dry.stdout) as { name: string; memory: number; disks: Array<{ target: string; access: string }>; vifs: unknown[] };
    assert.equal(cfg.name, 'dry1');
    assert.equal(cfg.memory, 96);
    assert.equal(cfg.disks[0]!.target, disk);
    assert.equal(cfg.disks[0]!.access, 'ro');
    assert.equal(cfg.vifs.length, 1);
    assert.doesNotMatch(await d.ok(['list']), /dry1/, 'a dry run starts nothing');
    await d.ok(['create', xm, 'name=xm2']);
    await d.waitConsole('xm2', /xeno-guest: mounted \/dev\/vda/);
    assert.match(await d.guestRun('xm2', 'cat /mnt/hello.txt'), /hello from xeno disk/);
    await d.ok(['destroy', 'xm2']);
  });

  it('refuses bad input with clear errors and creates nothing', async () => {
    const count = async () => (JSON.parse(await d.ok(['list', '--json'])) as ListRow[]).length;
    const n0 = await count();
    const py = d.writeCfg('py', 'vmid = 1\nmemory = 128\nname = "VM%d" % vmid\n');
    let r = await d.xeno(['create', py]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /py\.cfg:3:\d+: /, 'file:line:col of the Python construct');

    r = await d.xeno(['create', d.writeCfg('nokernel', guestCfg('nok').replace(GUEST.kernel, '/nonexistent/vmlinuz'))]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /kernel file \/nonexistent\/vmlinuz does not exist/);

    r = await d.xeno(['create', d.writeCfg('nodisk', guestCfg('nod', { disk: "[ '/nonexistent/disk.img,raw,xvda,rw' ]" }))]);
    assert.match(r.stderr, /disk xvda: \/nonexistent\/disk.img does not exist/);

    r = await d.xeno(['create', d.writeCfg('badname', guestCfg('bad name!'))]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /invalid domain name "bad name!" \(1-64 characters of A-Z a-z 0-9 _ \. -\)/);

    r = await d.xeno(['create', d.writeCfg('huge', guestCfg('huge', { memory: 64 * 1024 * 1024 }))]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /not enough free host memory/);

    await d.createGuest('dup');
    r = await d.xeno(['create', d.writeCfg('dup2', guestCfg('dup'))]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /already exists/);
    await d.ok(['destroy', 'dup']);

    r = await d.xeno(['destroy', 'nosuchdomain']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /domain 'nosuchdomain' does not exist/);

    r = await d.xeno(['pause', 'nosuchdomain']);
    assert.notEqual(r.code, 0);
    assert.equal(await count(), n0, 'nothing was created by the failures');
  });

  it('runs beside a second xenod on the same machine without collisions', async () => {
    await d.createGuest('twin');
    const other = new TestDaemon();
    try {
      await other.start();
      await other.createGuest('twin'); // names, ids, sockets, run dirs are per daemon
      const mine = JSON.parse(await d.ok(['list', '--json'])) as ListRow[];
      const theirs = JSON.parse(await other.ok(['list', '--json'])) as ListRow[];
      assert.notEqual(mine.find((r) => r.name === 'twin')!.pid, theirs.find((r) => r.name === 'twin')!.pid);
      const mineBefore = mine.find((r) => r.name === 'twin')!;
      await other.ok(['destroy', 'twin']);
      const still = JSON.parse(await d.ok(['list', '--json', 'twin'])) as ListRow[];
      assert.equal(still.length, 1, 'the first daemon still has its own twin');
      assert.equal(still[0]!.pid, mineBefore.pid);
      assert.equal(still[0]!.state, 'running');
      assert.equal(processGone(mineBefore.pid), false, 'its QEMU was not touched by the other daemon');
    } finally {
      await other.cleanup();
    }
    await d.ok(['destroy', 'twin']);
  });

  it('tells how to start the daemon when it is not running', async () => {
    const other = new TestDaemon();
    try {
      const r = await other.xeno(['list']);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /cannot reach xenod at .*is it running\? Start it with `xenod`/);
    } finally {
      await other.cleanup();
    }
  });
});
