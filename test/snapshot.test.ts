/**
 * Snapshots of a real defined guest on a real xenod, with a private copy of the guest's ext4 disk:
 * a snapshot with memory, then a change of the disk and of the guest's memory (its heartbeat
 * counter), then a revert: the guest is back at the snapshot's counter and file contents. A
 * disk-only snapshot on top, the tree across a xenod restart, both snapshots deleted while the
 * guest runs (block-commit back into the original image, read back after shutdown with debugfs),
 * a snapshot of the stopped guest reverted, and --quiesce refused when no guest agent answers.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TestDaemon, guestCfg } from './helpers/harness.js';

const beats = (d: TestDaemon, name: string, from = 0) => [...d.consoleLog(name).slice(from).matchAll(/heartbeat (\d+)\r?\n/g)].map((m) => Number(m[1]));
const overlays = (d: TestDaemon) => readdirSync(d.dir).filter((f) => /\.snap-[0-9a-f]{8}\.qcow2$/.test(f));
/** A file of the guest's ext4 image, read on the host (the guest is shut down). */
const hostCat = (img: string, file: string) => execFileSync('debugfs', ['-R', `cat ${file}`, img], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });

describe('snapshots of a real guest (external qcow2 overlays, with and without memory)', () => {
  const d = new TestDaemon();
  let disk: string;
  const diskOf = async () => (await d.client.get<{ config: { disks: Array<{ target: string; format: string }> } }>('/v1/domains/sn1')).config.disks[0]!;

  before(async () => {
    await d.start();
    disk = d.privateDisk('sn1.ext4');
    await d.ok(['new', d.writeCfg('sn1', guestCfg('sn1', { disk: `[ 'format=raw,vdev=xvda,access=rw,target=${disk}' ]` }))]);
    await d.ok(['start', 'sn1']);
    await d.waitConsole('sn1', /xeno-guest: mounted \/dev\/vda/);
    await d.waitConsole('sn1', /heartbeat 2\r?\n/);
  });
  after(() => d.cleanup());

  it('--quiesce without a guest agent fails clearly and keeps nothing', async () => {
    const r = await d.xeno(['snapshot-create', 'sn1', 'q0', '--quiesce']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /cannot quiesce sn1: .*no agent answers guest-fsfreeze-freeze; the snapshot was not taken/);
    assert.match(await d.ok(['snapshot-list', 'sn1']), /^no snapshots$/m);
    assert.deepEqual(overlays(d), []);
    assert.equal((await diskOf()).target, disk, 'the guest still writes to its own image');
  });

  it('snapshot with memory, change disk and memory, revert: back at the counter and the file', async () => {
    assert.match(await d.guestRun('sn1', 'echo state-A > /mnt/f; sync; cat /mnt/f'), /state-A/);
    const atStart = d.lastHeartbeat('sn1');
    assert.match(await d.ok(['snapshot-create', 'sn1', 's1', '--memory']), /Snapshot s1 of sn1 taken \(disks and memory, 1 disk\)/);
    const atEnd = d.lastHeartbeat('sn1');
    const cur = await diskOf();
    assert.match(cur.target, /sn1\.ext4\.snap-[0-9a-f]{8}\.qcow2$/);
    assert.equal(cur.format, 'qcow2');
    assert.match(await d.guestRun('sn1', 'echo state-B > /mnt/f; sync; cat /mnt/f'), /state-B/);
    await d.waitConsole('sn1', new RegExp(`heartbeat ${atEnd + 5}\\r?\\n`));
    const before = d.lastHeartbeat('sn1');
    const out = await d.ok(['snapshot-revert', 'sn1', 's1']);
    // From here on only the restored guest prints (the old QEMU is gone).
    const from = d.consoleLog('sn1').length;
    assert.match(out, /Reverted sn1 to snapshot s1 \(running, domain \d+\)/);
    await d.waitConsole('sn1', /heartbeat \d+\r?\n[\s\S]*heartbeat \d+\r?\n/, 60_000, from);
    const after = beats(d, 'sn1', from);
    assert.ok(after[0]! >= atStart && after[0]! <= atEnd + 3 && after[0]! < before, `the counter goes on from the snapshot's (${atStart}..${atEnd}), not from ${before}: ${after.join(',')}`);
    assert.match(await d.guestRun('sn1', 'cat /mnt/f'), /^state-A$/m);
    assert.equal(overlays(d).length, 1, 'the discarded overlay was removed, a fresh one is in use');
  });

  it('a disk-only snapshot on top; the tree survives a xenod restart', async () => {
    assert.match(await d.ok(['snapshot-create', 'sn1', 's2']), /Snapshot s2 of sn1 taken \(disks only, 1 disk\)/);
    assert.match(await d.guestRun('sn1', 'echo state-C > /mnt/f; sync; cat /mnt/f'), /state-C/);
    const list = await d.ok(['snapshot-list', 'sn1']);
    assert.match(list, /^s1 {2}\S+ \S+ {2}disks\+memory {2}\(running\)$/m);
    assert.match(list, /^ {2}└─ s2 \* {2}\S+ \S+ {2}disks only {2}\(running\)$/m);
    const pid = (await d.row('sn1'))!.pid;
    await d.stop();
    await d.start();
    assert.equal(await d.ok(['snapshot-list', 'sn1']), list, 'the same tree after the restart');
    assert.equal((await d.row('sn1'))!.pid, pid, 'the guest ran on, adopted');
  });

  it('delete merges the overlays back while the guest runs', async () => {
    const s1Overlay = (await d.client.get<Array<{ name: string; disks: Array<{ file: string }> }>>('/v1/domains/sn1/snapshots')).find((s) => s.name === 's2')!.disks[0]!.file;
    assert.match(await d.ok(['snapshot-delete', 'sn1', 's2']), /Deleted snapshot s2 of sn1: xvda: .*\.snap-[0-9a-f]{8}\.qcow2 merged into .*\.snap-[0-9a-f]{8}\.qcow2/);
    assert.equal((await diskOf()).target, s1Overlay, 'the guest writes to the layer below again');
    assert.match(await d.guestRun('sn1', 'cat /mnt/f'), /^state-C$/m);
    assert.match(await d.ok(['snapshot-delete', 'sn1', 's1']), /Deleted snapshot s1 of sn1: xvda: .* merged into .*sn1\.ext4$/m);
    assert.deepEqual(await diskOf(), { ...(await diskOf()), target: disk, format: 'raw' });
    assert.deepEqual(overlays(d), [], 'every overlay file is gone');
    assert.match(await d.ok(['snapshot-list', 'sn1']), /^no snapshots$/m);
    assert.match(await d.guestRun('sn1', 'echo state-D >> /mnt/f; sync; cat /mnt/f'), /state-C\nstate-D/);
    const beat = d.lastHeartbeat('sn1');
    await d.waitConsole('sn1', new RegExp(`heartbeat ${beat + 1}\\r?\\n`));
    await d.ok(['shutdown', '-w', 'sn1']);
    assert.equal(hostCat(disk, '/f'), 'state-C\nstate-D\n', 'the merged data is in the original image');
    // The definition names the original image again: the next test starts the guest from it.
  });

  it('a stopped guest: snapshot, start and write, stop, revert, start: the old contents', async () => {
    assert.match(await d.ok(['snapshot-create', 'sn1', 'off1']), /Snapshot off1 of sn1 taken \(disks only, 1 disk\)/);
    assert.match(await d.ok(['snapshot-list', 'sn1']), /^off1 \* .* disks only {2}\(stopped\)$/m);
    await d.ok(['start', 'sn1']);
    await d.waitConsole('sn1', /xeno-guest: mounted \/dev\/vda[\s\S]*heartbeat 1\r?\n/, 120_000, d.consoleLog('sn1').length);
    assert.match(await d.guestRun('sn1', 'echo state-E > /mnt/f; sync; cat /mnt/f'), /state-E/);
    await d.ok(['shutdown', '-w', 'sn1']);
    assert.match(await d.ok(['snapshot-revert', 'sn1', 'off1']), /Reverted sn1 to snapshot off1 \(stopped\)/);
    await d.ok(['start', 'sn1']);
    await d.waitConsole('sn1', /xeno-guest: mounted \/dev\/vda[\s\S]*heartbeat 1\r?\n/, 120_000, d.consoleLog('sn1').length);
    assert.match(await d.guestRun('sn1', 'cat /mnt/f'), /^state-C\nstate-D$/m);
    await d.ok(['shutdown', '-w', 'sn1']);
    // Deleted while stopped: merged offline (qemu-img commit).
    assert.match(await d.ok(['snapshot-delete', 'sn1', 'off1']), /merged into .*sn1\.ext4$/m);
    assert.deepEqual(overlays(d), []);
    assert.equal(hostCat(disk, '/f'), 'state-C\nstate-D\n');
    assert.equal(path.basename(disk), 'sn1.ext4');
    // The same four commands as JSON, for scripts.
    const made = JSON.parse(await d.ok(['snapshot-create', 'sn1', 'offj', '--json'])) as unknown;
    assert.match(JSON.stringify(made), /"offj"/);
    const again = await d.xeno(['snapshot-create', 'sn1', 'offj']);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /sn1 already has a snapshot named 'offj'/);
    const listed = JSON.parse(await d.ok(['snapshot-list', 'sn1', '--json'])) as unknown;
    assert.match(JSON.stringify(listed), /"offj"/);
    JSON.parse(await d.ok(['snapshot-revert', 'sn1', 'offj', '--json']));
    JSON.parse(await d.ok(['snapshot-delete', 'sn1', 'offj', '--json']));
    assert.deepEqual(overlays(d), []);
  });
});
