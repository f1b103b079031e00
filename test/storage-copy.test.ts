/**
 * `xeno migrate --copy-storage` between two real xenods on this machine (relocation servers on
 * 127.0.0.1, no shared storage: the target makes its own copy of the disk in xeno-images beside its
 * state dir). The guest's disk is a 1 GiB thin qcow2 holding 48 MiB of random bytes at its start and
 * 16 MiB at its end (written on the host), so the mirror has real work but copies only what is
 * allocated; the guest writes 1 MiB blocks of a known pattern to it from its console during the
 * copy (dd from tmpfs, conv=fsync, round after round from before the copy until after the switch).
 * On the target its own checksum of what it wrote (read back from the disk, page cache dropped)
 * matches, and after shutdown `qemu-img compare` finds the target's image identical to the
 * source's initial bytes plus those writes, and still thin. The target xenod killed during the
 * mirror and during the RAM phase (its test crash points), and the target's image dir full (a
 * 24 MiB tmpfs) during the mirror: the source guest runs on, and the target has no domain, no
 * QEMU and no half-copied disk. A guest with snapshots is refused (the tree cannot be copied), one
 * with a snapshot holding memory too (its RAM state is a file on the source), nothing made on the target.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, ftruncateSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TestDaemon, freePort, guestCfg } from './helpers/harness.js';

const MiB = 1024 * 1024;
const DISK_MIB = 1024;
/** Random data the image starts with (the rest reads as zeros and is not allocated: thin). */
const HEAD_MIB = 48;
const TAIL_MIB = 16;
const BLOCKS = 24;

/** What the guest's writer puts in block i in its generation g: a `blk-%08d-%04d` line, then `x` to the MiB. */
function pattern(i: number, g: number): Buffer {
  const b = Buffer.alloc(MiB, 'x');
  b.write(`blk-${String(i).padStart(8, '0')}-${String(g).padStart(4, '0')}\n`);
  return b;
}

/**
 * Writes blocks 0..BLOCKS-1 over and over (generation g), until /tmp/stop exists: it runs from
 * before the copy to after the switch. Then prints where it stopped: blocks below i hold
 * generation g, the others g-1. The filler is made once (busybox `yes` is far too slow under TCG).
 */
const writer = [
  "head -c 1048558 /dev/zero | tr '\\0' x > /tmp/base; g=0; i=0; while [ ! -e /tmp/stop ]; do { printf 'blk-%08d-%04d\\n' $i $g; cat /tmp/base; } > /tmp/b;",
  'dd if=/tmp/b of=/dev/vda bs=1048576 seek=$i conv=fsync 2>/dev/null; i=$((i+1)); if [ $i -ge', String(BLOCKS), ']; then i=0; g=$((g+1)); echo gen-$g; fi; done; echo writer-""done-$g-$i',
].join(' ');

describe('migrate --copy-storage between two real xenods', () => {
  const keys = mkdtempSync(path.join(tmpdir(), 'xeno-sc-keys-'));
  const key = path.join(keys, 'k.psk');
  writeFileSync(key, randomBytes(32).toString('hex') + '\n', { mode: 0o600 });
  const ports: Record<string, number> = {};
  const daemons: TestDaemon[] = [];
  let a: TestDaemon;
  let b: TestDaemon;
  let c: TestDaemon;
  let disk: string;
  let head: Buffer;
  let tail: Buffer;
  /** A sparse raw file of DISK_MIB holding `head` at 0 and `tail` at the end, and `over` at 0. */
  const sparseRaw = (file: string, over?: Buffer) => {
    const fd = openSync(file, 'w');
    ftruncateSync(fd, DISK_MIB * MiB);
    writeSync(fd, head, 0, head.length, 0);
    writeSync(fd, tail, 0, tail.length, (DISK_MIB - TAIL_MIB) * MiB);
    if (over) writeSync(fd, over, 0, over.length, 0);
    closeSync(fd);
  };
  const tmpfsDir = () => path.join(c.dir, 'xeno-images');
  let tmpfsMounted = false;

  async function daemon(name: string): Promise<TestDaemon> {
    ports[name] = await freePort();
    const d = new TestDaemon({
      configText: ['(xend-relocation-server yes)', `(xend-relocation-port ${ports[name]})`, "(xend-relocation-address '127.0.0.1')", `(xeno-relocation-key-file '${key}')`].join('\n') + '\n',
    });
    daemons.push(d);
    await d.start();
    return d;
  }
  const imagesOf = (d: TestDaemon) => (existsSync(path.join(d.dir, 'xeno-images', 'sc1')) ? readdirSync(path.join(d.dir, 'xeno-images', 'sc1')) : []);

  before(async () => {
    a = await daemon('a');
    b = await daemon('b');
    c = await daemon('c');
    // 1 GiB thin qcow2: only what is allocated (the random head and tail, the guest's writes) is copied
    head = randomBytes(HEAD_MIB * MiB);
    tail = randomBytes(TAIL_MIB * MiB);
    const raw = path.join(a.dir, 'sc1-initial.raw');
    sparseRaw(raw);
    disk = path.join(a.dir, 'sc1.qcow2');
    execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, disk]);
    rmSync(raw);
    await a.createGuest('sc1', { disk: `[ 'format=qcow2,vdev=xvda,access=rw,target=${disk}' ]` });
    await a.waitConsole('sc1', /heartbeat 2\r?\n/);
  });
  after(async () => {
    if (tmpfsMounted) execFileSync('umount', [tmpfsDir()]);
    await Promise.all(daemons.map((d) => d.cleanup()));
    rmSync(keys, { recursive: true, force: true });
  });

  for (const point of ['storage-copy:mirroring', 'storage-copy:ram']) {
    it(`the target killed at ${point}: the source runs on, the restarted target has nothing`, async () => {
      await c.stop();
      await c.start({ env: { XENO_TEST_CRASH_AT: point } });
      const src = (await a.row('sc1'))!;
      const r = await a.xeno(['migrate', 'sc1', '127.0.0.1', '-l', '--copy-storage', '-p', String(ports.c)], { timeoutMs: 600_000 });
      assert.notEqual(r.code, 0, `expected a failure, got ${r.stdout}`);
      assert.match(r.stderr, /migration of sc1 to 127\.0\.0\.1:\d+ failed: .*; the guest keeps running here/);
      if (point === 'storage-copy:ram') assert.match(a.log, /storage copy of sc1: all 1 disk\(s\) mirrored \(ready\), migrating RAM/);
      await c.waitExit();
      const now = (await a.row('sc1'))!;
      assert.equal(now.state, 'running');
      assert.equal(now.pid, src.pid, 'the same QEMU runs the guest');
      const beat = a.lastHeartbeat('sc1');
      await a.waitConsole('sc1', new RegExp(`heartbeat ${beat + 2}\\r?\\n`));
      const jobs = await a.client.get<{ state: string }>('/v1/domains/sc1');
      assert.equal(jobs.state, 'running');
      await c.start();
      assert.equal(await c.row('sc1'), undefined, 'the restarted target destroyed the half-made domain');
      assert.deepEqual(imagesOf(c), [], 'and removed the half-copied disk');
      assert.deepEqual(c.qemusOnHost(), [], 'no QEMU of the target is left');
    });
  }

  it("the target's disk fills up during the mirror: the source runs on, the target has no domain and no half-copied disk", async () => {
    // the target's image dir on a 24 MiB tmpfs: the thin image is created, the mirror's writes run out of room
    mkdirSync(tmpfsDir(), { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=24m,mode=0755', 'xeno-test-full', tmpfsDir()]);
    tmpfsMounted = true;
    const src = (await a.row('sc1'))!;
    const r = await a.xeno(['migrate', 'sc1', '127.0.0.1', '-l', '--copy-storage', '-p', String(ports.c)], { timeoutMs: 600_000 });
    assert.notEqual(r.code, 0, `expected a failure, got ${r.stdout}`);
    assert.match(r.stderr, /migration of sc1 to 127\.0\.0\.1:\d+ failed: .*(No space left|ENOSPC|space).*; the guest keeps running here/i);
    const now = (await a.row('sc1'))!;
    assert.equal(now.state, 'running');
    assert.equal(now.pid, src.pid, 'the same QEMU runs the guest');
    assert.deepEqual((await a.client.get<{ config: { disks: Array<{ target: string }> } }>('/v1/domains/sc1')).config.disks.map((x) => x.target), [disk], 'on its own disk');
    const beat = a.lastHeartbeat('sc1');
    await a.waitConsole('sc1', new RegExp(`heartbeat ${beat + 2}\\r?\\n`));
    for (let t = 0; (await c.row('sc1')) !== undefined && t < 100; t++) await new Promise((res) => setTimeout(res, 100));
    assert.equal(await c.row('sc1'), undefined, 'the target destroyed its half-made domain');
    assert.deepEqual(imagesOf(c), [], 'and removed the half-copied disk');
    assert.deepEqual(c.qemusOnHost(), [], 'no QEMU of the target is left');
    execFileSync('umount', [tmpfsDir()]);
    tmpfsMounted = false;
  });

  it('a guest with snapshots is refused --copy-storage (the tree cannot go along), untouched', async () => {
    await a.ok(['snapshot-create', 'sc1', 'keep']);
    const r = await a.xeno(['migrate', 'sc1', '127.0.0.1', '-l', '--copy-storage', '-p', String(ports.b)]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /sc1 has 1 snapshot\(s\) \(keep\): --copy-storage copies each disk as the guest sees it now.*delete them first.*; the guest was not touched/);
    assert.equal((await a.row('sc1'))!.state, 'running');
    assert.equal(await b.row('sc1'), undefined);
    assert.deepEqual(imagesOf(b), [], 'the target made no disk');
    await a.ok(['snapshot-delete', 'sc1', 'keep']);
    assert.equal((await a.client.get<{ config: { disks: Array<{ target: string }> } }>('/v1/domains/sc1')).config.disks[0]!.target, disk);
    // a snapshot with memory: its RAM state is a file in the source's state dir, which cannot go along either
    await a.ok(['snapshot-create', 'sc1', 'ram', '--memory']);
    const before = (await a.row('sc1'))!;
    const m = await a.client.post('/v1/domains/sc1/migrate', { host: '127.0.0.1', port: ports.b, live: true, copyStorage: true }).then(() => undefined, (e: { status: number; message: string }) => e);
    assert.ok(m, 'refused');
    assert.equal(m.status, 409, m.message);
    assert.match(m.message, /^migration of sc1 to 127\.0\.0\.1:\d+ failed: sc1 has 1 snapshot\(s\) \(ram\): --copy-storage .*\(and ram holds RAM state in this host's state dir, which no migration carries\); delete them first .*; the guest was not touched and keeps running here$/);
    const now = (await a.row('sc1'))!;
    assert.equal(now.state, 'running');
    assert.equal(now.pid, before.pid, 'the same QEMU');
    assert.equal(await b.row('sc1'), undefined, 'no domain on the target');
    assert.deepEqual(imagesOf(b), [], 'the target made no disk');
    assert.deepEqual(b.qemusOnHost(), [], 'nor a QEMU');
    assert.match(await a.ok(['snapshot-list', 'sc1']), /^ram \* /m, 'the snapshot is still there');
    await a.ok(['snapshot-delete', 'sc1', 'ram']);
    assert.equal((await a.client.get<{ config: { disks: Array<{ target: string }> } }>('/v1/domains/sc1')).config.disks[0]!.target, disk);
  });

  it('the guest writes during the copy; on the target its data checks out, and the images compare equal', async () => {
    await a.guestRun('sc1', `{ (${writer}) > /dev/ttyS0 2>&1 & }`);
    await a.waitConsole('sc1', /gen-1\r?\n/, 300_000);
    const run = await a.xeno(['migrate', 'sc1', '127.0.0.1', '-l', '--copy-storage', '-p', String(ports.b)]);
    assert.equal(run.code, 0, run.stderr);
    const out = run.stdout;
    // not on a terminal: the mirror's start and end on stderr, so a long copy is never silent
    assert.match(run.stderr, /^migrate sc1: mirroring its disks to the target: [\d.]+ MiB to copy$/m);
    assert.match(run.stderr, /^migrate sc1: the disks are in sync \([\d.]+ MiB in [\d.]+ s\); copying the RAM$/m);
    assert.match(out, /^Migrated domain sc1 to 127\.0\.0\.1:\d+ \(live, domain \d+ there, running\)/m);
    assert.equal(await a.row('sc1'), undefined, 'it left the source');
    // a guest gone from the target right after its commit: both hosts' events, the target's log and console
    if (!(await b.row('sc1'))) {
      assert.fail(`sc1 is not on the target after: ${out}\nsource events:\n${(await a.ok(['dmesg'])).slice(-2500)}\ntarget events:\n${(await b.ok(['dmesg'])).slice(-2500)}\n` +
        `target log:\n${b.log.slice(-4000)}\ntarget console:\n${b.consoleLog('sc1').slice(-2500)}`);
    }
    const there = await b.client.get<{ config: { disks: Array<{ target: string }> } }>('/v1/domains/sc1');
    const copy = there.config.disks[0]!.target;
    assert.equal(copy, path.join(b.dir, 'xeno-images', 'sc1', 'sc1.qcow2'), 'the target runs it on its own copy');
    await b.guestRun('sc1', 'touch /tmp/stop');
    const [, g, i] = (await b.waitConsole('sc1', /writer-done-(\d+)-(\d+)/, 300_000)).map(Number);
    const written = Buffer.concat(Array.from({ length: BLOCKS }, (_, j) => pattern(j, j < i! ? g! : g! - 1)));
    const want = createHash('sha256').update(written).digest('hex');
    const sum = await b.guestRun('sc1', `sync; echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/vda bs=1048576 count=${BLOCKS} 2>/dev/null | sha256sum`, 120_000);
    assert.match(sum, new RegExp(`^${want}\\s`, 'm'), "the guest's checksum of what it wrote, read back from the disk on the target");
    await b.ok(['shutdown', '-w', 'sc1']);
    const ref = path.join(b.dir, 'expected.raw');
    sparseRaw(ref, written);
    assert.match(execFileSync('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', ref, copy], { encoding: 'utf8' }), /Images are identical/);
    const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', copy], { encoding: 'utf8' })) as { 'virtual-size': number; 'actual-size': number };
    assert.equal(info['virtual-size'], DISK_MIB * MiB, 'same size');
    assert.ok(info['actual-size'] < (HEAD_MIB + TAIL_MIB + 64) * MiB, `thin on the target too: ${info['actual-size']} bytes allocated of ${DISK_MIB} MiB`);
  });
});
