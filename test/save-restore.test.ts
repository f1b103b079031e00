/**
 * Save and restore end to end on real xenods and real guests (issue 4): save frees the guest,
 * restore brings it back with a new id and its heartbeat carries on; checkpoints; paused guests;
 * another xenod with another state dir; every refusal leaves nothing behind; a save failing half-way
 * (disk full, read-only destination) leaves the guest running without a partial file; a xenod killed
 * mid-save is followed by one that resumes the guest; the managed save around xenod's stop/start.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { processGone } from '../src/host/proc.js';
import { encodeHeader, type SaveHeader } from '../src/toolstack/savefile/format.js';
import { openSaveFile } from '../src/toolstack/savefile/reader.js';
import { GUEST, REPO, TestDaemon, ramByteOffset, skipOrFail, sleep, type CliResult } from './helpers/harness.js';

const rows = (d: TestDaemon) => d.rows();
const row = (d: TestDaemon, name: string) => d.row(name);

async function freeMemory(d: TestDaemon): Promise<number> {
  return (await d.client.get<{ free_memory: number }>('/v1/host')).free_memory;
}

/** QEMU run dirs of a daemon: one per live domain. */
function runDirs(d: TestDaemon): string[] {
  try {
    return readdirSync(path.join(d.stateDir, 'run'));
  } catch {
    return [];
  }
}

/** The heartbeats printed in a console log from `from` on. */
function heartbeatsFrom(d: TestDaemon, name: string, from: number): number[] {
  return [...d.consoleLog(name).slice(from).matchAll(/heartbeat (\d+)\r?\n/g)].map((m) => Number(m[1]));
}

/** After a restore: the guest prints heartbeat N+1 first, where N was its last before the save. */
async function assertHeartbeatContinues(d: TestDaemon, name: string, savedAt: number, from: number): Promise<void> {
  await d.waitConsole(name, new RegExp(`heartbeat ${savedAt + 1}\\r?\\n`), 60_000, from);
  const after0 = heartbeatsFrom(d, name, from);
  assert.equal(after0[0], savedAt + 1, `first heartbeat after the restore follows ${savedAt}: ${after0.join(',')}`);
}

function failed(r: CliResult, re: RegExp): void {
  assert.notEqual(r.code, 0, `expected a failure, got: ${r.stdout}`);
  assert.match(r.stderr, re);
}

/** Rewrite a save file's header (to fake what checks must refuse); payload and trailer are kept. */
async function withHeader(src: string, dst: string, change: (h: SaveHeader) => void): Promise<void> {
  const info = await openSaveFile(src);
  const h = structuredClone(info.header);
  change(h);
  writeFileSync(dst, Buffer.concat([encodeHeader(h), readFileSync(src).subarray(info.payloadOffset)]));
}

describe('save and restore on real xenods', () => {
  const d = new TestDaemon();
  const e = new TestDaemon();
  let disk: string;
  let files: string;

  before(async () => {
    await d.start();
    files = path.join(d.dir, 'saves');
    mkdirSync(files);
    disk = path.join(d.dir, 'sr1.ext4');
    copyFileSync(GUEST.disk, disk);
  });
  after(async () => {
    await e.cleanup();
    await d.cleanup();
  });

  it('save frees the guest; restore brings it back with a new id, its disk, and its heartbeat going on', async () => {
    const id1 = await d.createGuest('sr1', { disk: `[ 'file:${disk},xvda,w' ]` });
    await d.waitConsole('sr1', /xeno-guest: mounted \/dev\/vda/);
    await d.waitConsole('sr1', /heartbeat 2\r?\n/);
    assert.match(await d.guestRun('sr1', 'echo before-save > /mnt/marker; sync; cat /mnt/marker'), /before-save/);
    const pid1 = (await row(d, 'sr1'))!.pid!;
    const free0 = await freeMemory(d);
    const file = path.join(files, 'sr1.save');

    const out = await d.ok(['save', 'sr1', file]);
    assert.match(out, /^Saved domain sr1 to .*sr1\.save: [\d.]+ MiB in [\d.]+ s$/m);
    assert.equal(await row(d, 'sr1'), undefined, 'the saved guest leaves xeno list');
    assert.ok(processGone(pid1), 'its QEMU has exited');
    assert.ok((await freeMemory(d)) >= free0 + 128, 'its memory went back to the host');
    assert.ok(existsSync(file) && !existsSync(`${file}.partial`));
    assert.deepEqual(runDirs(d), [], 'nothing of it is left in the run dir');
    const info = await openSaveFile(file);
    assert.equal(info.header.name, 'sr1');
    assert.equal(info.header.state, 'running');
    assert.match(info.header.machineType, /^pc-i440fx-/);
    const savedAt = d.lastHeartbeat('sr1');

    const from = d.consoleLog('sr1').length;
    const rOut = await d.ok(['restore', file]);
    assert.match(rOut, /^Restored domain sr1 \(id=\d+, running\) from .*sr1\.save in [\d.]+ s$/m);
    const r = (await row(d, 'sr1'))!;
    assert.ok(r.id > id1, `a new domain id (${r.id} > ${id1})`);
    assert.equal(r.state, 'running');
    await assertHeartbeatContinues(d, 'sr1', savedAt, from);
    assert.match(await d.guestRun('sr1', 'cat /mnt/marker; echo after-restore >> /mnt/marker; sync; cat /mnt/marker'), /before-save\nafter-restore/);
  });

  it('save -c keeps the guest running; the checkpoint restores on another xenod with another state dir', async () => {
    const file = path.join(files, 'sr1-ckpt.save');
    const before0 = (await row(d, 'sr1'))!;
    const hbBefore = d.lastHeartbeat('sr1');
    const res = JSON.parse(await d.ok(['save', '-c', 'sr1', file, '--json'])) as { checkpoint: boolean; size: number; state: string; id: number };
    assert.equal(res.checkpoint, true);
    assert.equal(res.state, 'running');
    assert.equal(res.id, before0.id);
    const after0 = (await row(d, 'sr1'))!;
    assert.equal(after0.state, 'running');
    assert.equal(after0.pid, before0.pid, 'the same QEMU runs on');
    const savedAt = d.lastHeartbeat('sr1');
    await d.waitConsole('sr1', new RegExp(`heartbeat ${savedAt + 1}\\r?\\n`));

    // Another host seeing the same disk path: the original must let go of the disk first.
    await d.ok(['destroy', 'sr1']);
    await e.start();
    const from = e.consoleLog('sr1').length;
    const out = await e.ok(['restore', file]);
    assert.match(out, /Restored domain sr1 \(id=1, running\)/);
    // The checkpoint froze the counter somewhere between the last heartbeat before `save -c` and
    // the last one after it (the guest ran on): it carries on from there, never from 1.
    for (let i = 0; heartbeatsFrom(e, 'sr1', from).length < 2; i++) {
      assert.ok(i < 600, `two heartbeats after the restore: ${e.consoleLog('sr1').slice(from).slice(-300)}`);
      await sleep(100);
    }
    const resumed = heartbeatsFrom(e, 'sr1', from);
    assert.ok(resumed[0]! >= hbBefore + 1 && resumed[0]! <= savedAt + 1, `first heartbeat after the restore (${resumed.join(',')}) follows the checkpoint, taken between ${hbBefore} and ${savedAt}`);
    resumed.forEach((n, i) => assert.equal(n, resumed[0]! + i, `consecutive: ${resumed.join(',')}`));
    assert.match(await e.guestRun('sr1', 'cat /mnt/marker'), /before-save\nafter-restore/);

    // And back: e saves it, d restores it.
    const back = path.join(files, 'sr1-back.save');
    await e.ok(['save', 'sr1', back]);
    const savedAt2 = e.lastHeartbeat('sr1');
    const from2 = d.consoleLog('sr1').length;
    await d.ok(['restore', back]);
    await assertHeartbeatContinues(d, 'sr1', savedAt2, from2);
  });

  it('a paused guest saves and restores paused; restore -p leaves a running one paused', async () => {
    await d.ok(['pause', 'sr1']);
    await sleep(300);
    // Checkpoints of a paused guest, twice: it stays paused and can be saved again.
    const quiet = d.consoleLog('sr1').length;
    for (const n of [1, 2]) {
      assert.match(await d.ok(['save', '-c', 'sr1', path.join(files, `sr1-pc${n}.save`)]), /checkpoint: it keeps paused/);
      assert.equal((await row(d, 'sr1'))!.state, 'paused');
    }
    assert.deepEqual(heartbeatsFrom(d, 'sr1', quiet), [], 'a paused guest does not run during its checkpoints');
    const paused = path.join(files, 'sr1-paused.save');
    await d.ok(['save', 'sr1', paused]);
    assert.equal((await openSaveFile(paused)).header.state, 'paused');
    const savedAt = d.lastHeartbeat('sr1');
    let from = d.consoleLog('sr1').length;
    await d.ok(['restore', paused]);
    assert.equal((await row(d, 'sr1'))!.state, 'paused');
    await sleep(1500);
    assert.deepEqual(heartbeatsFrom(d, 'sr1', from), [], 'a paused guest prints nothing');
    await d.ok(['unpause', 'sr1']);
    await assertHeartbeatContinues(d, 'sr1', savedAt, from);

    // restore -p of a running guest's save, with the progress bar on a terminal (script(1) gives a pty).
    const running = path.join(files, 'sr1-run.save');
    const tty = execFileSync('script', ['-qec', `${process.execPath} ${path.join(REPO, 'bin/xeno.cjs')} save sr1 ${running}`, '/dev/null'], {
      env: { ...process.env, XENO_SOCKET: d.socket },
      encoding: 'utf8',
    });
    assert.match(tty, /Saving sr1 \|.*\| 100% \| \d+\/\d+ MiB \| \d+ MiB\/s \| ETA/, 'a progress bar with bytes, rate and ETA');
    assert.match(tty, /Saved domain sr1/);
    const savedAt2 = d.lastHeartbeat('sr1');
    from = d.consoleLog('sr1').length;
    await d.ok(['restore', '-p', running]);
    assert.equal((await row(d, 'sr1'))!.state, 'paused');
    await d.ok(['unpause', 'sr1']);
    await assertHeartbeatContinues(d, 'sr1', savedAt2, from);
  });

  it('restore refuses bad files and impossible restores with clear messages, and creates nothing', async () => {
    const good = path.join(files, 'good.save');
    await d.ok(['save', '-c', 'sr1', good]);
    const n0 = (await rows(d)).length;
    const dirs0 = runDirs(d).length;
    const nothingCreated = async () => {
      assert.equal((await rows(d)).length, n0, 'no domain was created');
      assert.equal(runDirs(d).length, dirs0, 'no QEMU was left');
    };

    failed(await d.xeno(['restore', good]), /cannot restore .*good\.save: a domain named sr1 already exists \(id \d+, running\)/);
    await nothingCreated();

    // The rest with sr1 saved away (its name free), then back.
    const base = path.join(files, 'base.save');
    await d.ok(['save', 'sr1', base]);
    const n1 = (await rows(d)).length;
    const dirs1 = runDirs(d).length;
    const unchanged = async () => {
      assert.equal((await rows(d)).length, n1, 'no domain was created');
      assert.equal(runDirs(d).length, dirs1, 'no QEMU was left');
    };
    const buf = readFileSync(base);
    const info = await openSaveFile(base);

    // A byte flipped inside a guest RAM page (in the kernel's banner): QEMU loads such a stream
    // without complaint, so only the checksum can refuse it, and before the guest ever runs.
    const flipped = path.join(files, 'flipped.save');
    const f = Buffer.from(buf);
    const at = ramByteOffset(f, info.payloadOffset, info.payloadLength);
    f[at] = f[at]! ^ 0x20;
    writeFileSync(flipped, f);
    const consoleBefore = d.consoleLog('sr1').length;
    failed(await d.xeno(['restore', flipped]), /flipped\.save is corrupted: its SHA-256 checksum does not match the trailer/);
    await unchanged();
    assert.equal(heartbeatsFrom(d, 'sr1', consoleBefore).length, 0, 'the refused guest never ran');
    assert.doesNotMatch(await d.ok(['dmesg']), /restored from .*flipped\.save/);

    const truncated = path.join(files, 'truncated.save');
    for (const len of [Math.floor(buf.length / 2), buf.length - 1, 100]) {
      writeFileSync(truncated, buf.subarray(0, len));
      failed(await d.xeno(['restore', truncated]), /truncated/);
    }
    await unchanged();

    const v2 = path.join(files, 'v2.save');
    const b2 = Buffer.from(buf);
    b2.writeUInt32LE(2, 8);
    writeFileSync(v2, b2);
    failed(await d.xeno(['restore', v2]), /save format version 2; this xeno reads version 1 only/);

    const notSave = path.join(files, 'text.save');
    writeFileSync(notSave, 'name = "not a save file"\n'.repeat(10));
    failed(await d.xeno(['restore', notSave]), /not a xeno save file/);
    failed(await d.xeno(['restore', path.join(files, 'missing.save')]), /does not exist/);

    const huge = path.join(files, 'huge.save');
    await withHeader(base, huge, (h) => {
      h.config.maxmem = 64 * 1024 * 1024;
      h.config.memory = 64 * 1024 * 1024;
    });
    failed(await d.xeno(['restore', huge]), /cannot restore .*: not enough free host memory/);

    const nodisk = path.join(files, 'nodisk.save');
    await withHeader(base, nodisk, (h) => {
      h.config.disks[0]!.target = path.join(d.dir, 'gone.ext4');
    });
    failed(await d.xeno(['restore', nodisk]), /cannot restore .*: disk xvda: .*gone\.ext4 does not exist/);

    const newer = path.join(files, 'newer.save');
    await withHeader(base, newer, (h) => {
      h.qemuVersion = '99.0.0';
    });
    failed(await d.xeno(['restore', newer]), /saved by QEMU 99\.0\.0, this host has the older QEMU/);

    const machine = path.join(files, 'machine.save');
    await withHeader(base, machine, (h) => {
      h.machineType = 'pc-i440fx-99.9';
    });
    failed(await d.xeno(['restore', machine]), /needs QEMU machine type pc-i440fx-99\.9/);
    await unchanged();

    await d.ok(['restore', base]);
    assert.equal((await row(d, 'sr1'))!.state, 'running');
  });

  it('a save failing half-way (disk full, read-only destination) leaves the guest running and no partial file', async (t) => {
    const mnt = path.join(d.dir, 'tiny');
    mkdirSync(mnt);
    if (process.getuid?.() !== 0) {
      skipOrFail(t, 'needs root to mount a tmpfs');
      return;
    }
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'xeno-test-tiny', mnt], { stdio: 'ignore' });
    try {
      const pid = (await row(d, 'sr1'))!.pid;
      let r = await d.xeno(['save', 'sr1', path.join(mnt, 'full.save')]);
      failed(r, /no space left on device/);
      assert.match(r.stderr, /the guest was left running, and the partial file .*full\.save\.partial was removed/);
      assert.deepEqual(readdirSync(mnt), []);
      let now = (await row(d, 'sr1'))!;
      assert.equal(now.state, 'running');
      assert.equal(now.pid, pid);
      let hb = d.lastHeartbeat('sr1');
      await d.waitConsole('sr1', new RegExp(`heartbeat ${hb + 1}\\r?\\n`));

      execFileSync('mount', ['-o', 'remount,ro', mnt], { stdio: 'ignore' });
      r = await d.xeno(['save', 'sr1', path.join(mnt, 'ro.save')]);
      failed(r, /read-only file system/);
      assert.deepEqual(readdirSync(mnt), []);

      r = await d.xeno(['save', 'sr1', path.join(d.dir, 'no', 'such', 'dir', 'x.save')]);
      failed(r, /directory .* does not exist/);
      now = (await row(d, 'sr1'))!;
      assert.equal(now.state, 'running');
      hb = d.lastHeartbeat('sr1');
      await d.waitConsole('sr1', new RegExp(`heartbeat ${hb + 1}\\r?\\n`));
    } finally {
      execFileSync('umount', ['-l', mnt], { stdio: 'ignore' });
    }
    await d.ok(['destroy', 'sr1']);
  });
});

describe('a xenod killed in the middle of a save', () => {
  // Test-only hook: the save holds for a long time once the guest is paused and FILE.partial exists.
  const h = new TestDaemon({ wrap: ['env', 'XENO_TEST_HOLD_SAVE_MS=600000'] });
  before(() => h.start());
  after(() => h.cleanup());

  it('leaves its intent on disk: the next xenod resumes the guest and removes the partial file', async () => {
    await h.createGuest('mid1');
    await h.waitConsole('mid1', /heartbeat 2\r?\n/);
    const file = path.join(h.dir, 'mid1.save');
    const saving = h.xeno(['save', 'mid1', file]);
    for (let i = 0; i < 600 && !(existsSync(`${file}.partial`) && (await row(h, 'mid1'))?.state === 'saving'); i++) await sleep(50);
    assert.ok(existsSync(`${file}.partial`), 'the save has begun');
    assert.equal((await row(h, 'mid1'))!.state, 'saving');
    const pid = (await row(h, 'mid1'))!.pid!;
    await h.stop('SIGKILL');
    const interrupted = await saving;
    assert.notEqual(interrupted.code, 0);
    assert.match(interrupted.stderr, /xenod closed the connection/, 'the CLI says the daemon went away mid-save');
    assert.equal(processGone(pid), false, 'the guest outlives xenod');
    const hb = h.lastHeartbeat('mid1');

    await h.start();
    const r = (await row(h, 'mid1'))!;
    assert.equal(r.state, 'running');
    assert.equal(r.pid, pid);
    assert.ok(!existsSync(`${file}.partial`), 'the partial file was removed');
    assert.ok(!existsSync(file));
    await h.waitConsole('mid1', new RegExp(`heartbeat ${hb + 1}\\r?\\n`));
    assert.match(await h.ok(['dmesg']), /interrupted save of mid1 .*partial file removed, guest resumed/);
    await h.ok(['destroy', 'mid1']);
  });
});

describe('managed save around xenod stop and start', () => {
  const m = new TestDaemon({ configText: '(xeno-save-on-stop yes)\n' });
  before(() => m.start());
  after(() => m.cleanup());

  it('saves every guest on SIGTERM and brings them back, running or paused, at the next start', async () => {
    await m.createGuest('ms1');
    await m.createGuest('ms2');
    await m.waitConsole('ms1', /heartbeat 2\r?\n/);
    await m.waitConsole('ms2', /heartbeat 2\r?\n/);
    await m.ok(['pause', 'ms2']);
    const pids = (await rows(m)).filter((r) => r.id !== 0).map((r) => r.pid!);
    await m.stop('SIGTERM');
    for (const pid of pids) assert.ok(processGone(pid), `QEMU ${pid} was saved and has exited`);
    const dir = path.join(m.stateDir, 'managed-save');
    assert.deepEqual(readdirSync(dir).sort(), ['ms1.save', 'ms2.save']);
    const hb1 = m.lastHeartbeat('ms1');
    const hb2 = m.lastHeartbeat('ms2');
    const from1 = m.consoleLog('ms1').length;
    const from2 = m.consoleLog('ms2').length;

    await m.start();
    assert.equal((await row(m, 'ms1'))!.state, 'running');
    assert.equal((await row(m, 'ms2'))!.state, 'paused');
    assert.deepEqual(readdirSync(dir), [], 'the managed saves are removed once restored');
    await assertHeartbeatContinues(m, 'ms1', hb1, from1);
    await m.ok(['unpause', 'ms2']);
    await assertHeartbeatContinues(m, 'ms2', hb2, from2);
    await m.ok(['destroy', 'ms1']);
    await m.ok(['destroy', 'ms2']);
  });
});
