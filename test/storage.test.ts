/**
 * Storage on real guests and real images (issue 12): image-create/image-info with qemu-img, a qcow2
 * disk hot-plugged into a running guest, written from inside it, detached (QEMU lets go of the
 * image only then), attached to another guest which reads the data back; block-list's counters
 * move with guest I/O; a spec whose format is not the file's is refused both ways, and a failed
 * attach leaves no QEMU node; a thin clone boots while its base stays byte-identical; cd-insert /
 * cd-eject swap a cdrom's medium; an attached disk survives save/restore. A detach puts back the
 * ACL the attach gave the QEMU user; after two snapshots (the disk's top node is an overlay's)
 * block-list and block-detach still find the disk and close its whole chain; an attach and a
 * detach cut short by a xenod crash (test crash points) are completed in the config at re-adoption.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BlockRow } from '../src/toolstack/block.js';
import type { ImageInfo } from '../src/toolstack/images.js';
import { GUEST, TestDaemon } from './helpers/harness.js';

const sha = (f: string): string => createHash('sha256').update(readFileSync(f)).digest('hex');

/** Whether some process (a QEMU) holds a write lock on the image: qemu-img without -U fails then. */
function imageLocked(f: string): boolean {
  try {
    execFileSync('qemu-img', ['info', f], { stdio: 'pipe' });
    return false;
  } catch (e) {
    return /lock/i.test(String((e as { stderr?: Buffer }).stderr ?? e));
  }
}

const getfacl = (f: string): string => execFileSync('getfacl', ['-p', '--', f], { encoding: 'utf8' });
/** An ACL entry for the unprivileged QEMU user (xeno-qemu, the daemon's default). */
const QEMU_ACL = /^user:xeno-qemu:/m;

describe('storage: block devices and images on real guests', { timeout: 1_500_000 }, () => {
  const d = new TestDaemon();
  let data: string;
  const marker = `XENO-DATA-${Math.random().toString(36).slice(2, 10)}`;

  const blocks = async (dom: string): Promise<BlockRow[]> => JSON.parse(await d.ok(['block-list', dom, '--json'])) as BlockRow[];
  const blk = async (dom: string, vdev: string): Promise<BlockRow | undefined> => (await blocks(dom)).find((b) => b.vdev === vdev);
  /** Waits in the guest until /dev/NAME exists (or is gone, with gone=true); returns what ls says. */
  const guestDev = (dom: string, name: string, gone = false) =>
    d.guestRun(dom, `i=0; while [ ${gone ? '' : '!'} -b /dev/${name} ] && [ $i -lt 300 ]; do sleep 0.2; i=$((i+1)); done; ls /dev/${name} 2>&1`, 120_000);

  before(async () => {
    await d.start();
    // a (empty) cdrom drive on A; neither has a virtio disk, so an attached one is /dev/vda inside
    await d.createGuest('sa', { disk: "[ 'format=raw, vdev=hdc, access=ro, devtype=cdrom' ]" });
    await d.createGuest('sb');
    await d.waitConsole('sa', /xeno-guest: up/, 240_000);
    await d.waitConsole('sb', /xeno-guest: up/, 240_000);
    data = path.join(d.dir, 'data.qcow2');
  });
  after(() => d.cleanup());

  it('image-create makes a qcow2 image; image-info reads its format and sizes', async () => {
    await d.ok(['image-create', data, '64m', '--format', 'qcow2']);
    const info = JSON.parse(await d.ok(['image-info', data, '--json'])) as ImageInfo;
    assert.equal(info.format, 'qcow2');
    assert.equal(info.virtualSize, 64 * 1024 * 1024);
    assert.equal(info.chain.length, 1);
    assert.match(await d.ok(['image-info', data]), /format: qcow2/);
    const again = await d.xeno(['image-create', data, '64m']);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /exists \(image-create never overwrites/);
  });

  it('a qcow2 disk hot-plugged into a running guest is written from inside; block-list counters move; detach lets the image go', async () => {
    await d.ok(['block-attach', 'sa', `format=qcow2, vdev=xvdb, access=rw, target=${data}`]);
    assert.match(await guestDev('sa', 'vda'), /^\/dev\/vda$/m);
    const before = (await blk('sa', 'xvdb'))!;
    assert.equal(before.inserted, data);
    assert.equal(before.format, 'qcow2');
    assert.equal(before.sizeBytes, 64 * 1024 * 1024);
    assert.equal(before.cache, 'none', 'cache=none where the filesystem takes O_DIRECT');
    await d.guestRun('sa', `printf '${marker}' > /tmp/m; dd if=/tmp/m of=/dev/vda bs=512 count=1 conv=sync 2>/dev/null; sync; dd if=/dev/vda of=/dev/null bs=4096 count=64 2>/dev/null; echo done`, 120_000);
    const afterIo = (await blk('sa', 'xvdb'))!;
    assert.ok(afterIo.wrBytes! >= before.wrBytes! + 512, `write bytes moved: ${before.wrBytes} -> ${afterIo.wrBytes}`);
    assert.ok(afterIo.wrReqs! > before.wrReqs!, 'write requests moved');
    assert.ok(afterIo.rdBytes! > before.rdBytes!, 'read bytes moved');
    assert.ok(imageLocked(data), 'QEMU holds the attached image');
    assert.match(getfacl(data), QEMU_ACL, 'the attach opened the image to the QEMU user');
    // kept in the stored config
    assert.match(await d.ok(['list', '-l', 'sa']), /xvdb/);

    await d.ok(['block-detach', 'sa', 'xvdb']);
    assert.match(await guestDev('sa', 'vda', true), /No such file/);
    assert.equal(await blk('sa', 'xvdb'), undefined);
    assert.ok(!imageLocked(data), 'after the detach QEMU has closed the image (its nodes are gone)');
    assert.doesNotMatch(getfacl(data), QEMU_ACL, "the detach put the image's ACL back");
  });

  it('a raw spec on a qcow2 file is refused, and the reverse; a failed attach leaves no node behind', async () => {
    const raw = await d.xeno(['block-attach', 'sb', `file:${data},xvdb,w`]);
    assert.notEqual(raw.code, 0);
    assert.match(raw.stderr, /is a qcow2 image but its spec says format=raw: refused/);
    const rawFile = path.join(d.dir, 'plain.img');
    writeFileSync(rawFile, Buffer.alloc(1 << 20));
    const q = await d.xeno(['block-attach', 'sb', `format=qcow2, vdev=xvdb, target=${rawFile}`]);
    assert.notEqual(q.code, 0);
    assert.match(q.stderr, /is a raw image but its spec says format=qcow2: refused/);
    assert.equal(await blk('sb', 'xvdb'), undefined);
    // QEMU itself refuses (the image is held read-write by sa): the half-made nodes are removed,
    // so the same vdev attaches cleanly afterwards (a left-over file-xvdb would be a duplicate)
    await d.ok(['block-attach', 'sa', `format=qcow2, vdev=xvdb, access=rw, target=${data}`]);
    const locked = await d.xeno(['block-attach', 'sb', `format=qcow2, vdev=xvdb, access=rw, target=${data}`]);
    assert.notEqual(locked.code, 0);
    assert.match(locked.stderr, /QEMU cannot open|lock/i);
    assert.equal(await blk('sb', 'xvdb'), undefined);
    await d.ok(['block-detach', 'sa', 'xvdb']);
  });

  it('the disk attached to another guest reads back what the first wrote', async () => {
    await d.ok(['block-attach', 'sb', `format=qcow2, vdev=xvdb, access=rw, target=${data}`]);
    assert.match(await guestDev('sb', 'vda'), /^\/dev\/vda$/m);
    const got = await d.guestRun('sb', 'dd if=/dev/vda bs=512 count=1 2>/dev/null | head -c 18', 120_000);
    assert.match(got, new RegExp(marker));
  });

  it('an attached disk survives save/restore (config and QEMU device), and the guest still reads it', async () => {
    const file = path.join(d.dir, 'sb.save');
    await d.ok(['save', 'sb', file]);
    await d.ok(['restore', file]);
    const b = (await blk('sb', 'xvdb'))!;
    assert.equal(b.inserted, data, 'the restored QEMU has the attached disk open');
    const got = await d.guestRun('sb', 'echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/vda bs=512 count=1 2>/dev/null | head -c 18', 120_000);
    assert.match(got, new RegExp(marker));
    await d.ok(['block-detach', 'sb', 'xvdb']);
  });

  it('cd-insert and cd-eject swap the medium of a cdrom drive (query-block)', async () => {
    const iso = path.join(d.dir, 'cd.img');
    writeFileSync(iso, Buffer.alloc(2 << 20, 0x41));
    const empty = (await blk('sa', 'hdc'))!;
    assert.equal(empty.inserted, null);
    assert.equal(empty.target, '');
    await d.ok(['cd-insert', 'sa', 'hdc', iso]);
    const ins = (await blk('sa', 'hdc'))!;
    assert.equal(ins.inserted, iso);
    assert.equal(ins.sizeBytes, 2 << 20);
    assert.equal(ins.trayOpen, false);
    const refused = await d.xeno(['cd-insert', 'sa', 'hdc', data]);
    assert.match(refused.stderr, /qcow2 image but its spec says format=raw/);
    assert.equal((await blk('sa', 'hdc'))!.inserted, iso, 'a refused insert keeps the medium');
    await d.ok(['cd-eject', 'sa', 'hdc']);
    const ej = (await blk('sa', 'hdc'))!;
    assert.equal(ej.inserted, null);
    assert.equal(ej.target, '');
  });

  it('after snapshots the disk sits on overlay nodes: block-list, a second snapshot and block-detach still find it', async () => {
    const img = path.join(d.dir, 'snapdisk.qcow2');
    await d.ok(['image-create', img, '16m', '--format', 'qcow2']);
    await d.ok(['block-attach', 'sa', `format=qcow2, vdev=xvdc, access=rw, target=${img}`]);
    assert.match(await guestDev('sa', 'vda'), /^\/dev\/vda$/m);
    await d.ok(['snapshot-create', 'sa', 'before-write']);
    await d.guestRun('sa', `printf '${marker}-2' > /tmp/m2; dd if=/tmp/m2 of=/dev/vda bs=512 count=1 conv=sync,fsync 2>/dev/null; echo done`, 120_000);
    await d.ok(['snapshot-create', 'sa', 'after-write']);
    const row = (await blk('sa', 'xvdc'))!;
    assert.match(row.inserted!, /snapdisk\.qcow2\.snap-[0-9a-f]{8}\.qcow2$/, 'the guest writes to the second overlay');
    assert.ok(row.wrBytes! >= 512 && row.sizeBytes === 16 * 1024 * 1024, `counters and size of the overlaid disk: ${JSON.stringify(row)}`);
    const files = [img, ...readdirSync(d.dir).filter((f) => /^snapdisk\.qcow2\.snap-/.test(f)).map((f) => path.join(d.dir, f))];
    assert.equal(files.length, 3);
    await d.ok(['block-detach', 'sa', 'xvdc']);
    assert.match(await guestDev('sa', 'vda', true), /No such file/);
    assert.equal(await blk('sa', 'xvdc'), undefined);
    for (const f of files) assert.ok(!imageLocked(f), `QEMU let go of ${path.basename(f)} (every node of the chain deleted)`);
    // the data is in the chain the detach left behind
    const flat = path.join(d.dir, 'snapdisk.raw');
    execFileSync('qemu-img', ['convert', '-O', 'raw', row.inserted!, flat]);
    assert.match(readFileSync(flat).subarray(0, 64).toString('latin1'), new RegExp(`${marker}-2`));
    // attached again from its top overlay: the same vdev hot-plugs cleanly (no node left behind)
    await d.ok(['block-attach', 'sa', `format=qcow2, vdev=xvdc, access=rw, target=${row.inserted!}`]);
    assert.equal((await blk('sa', 'xvdc'))!.inserted, row.inserted);
    await d.ok(['block-detach', 'sa', 'xvdc']);
  });

  it('a block-attach and a block-detach cut short by a xenod crash are completed in the config when xenod re-adopts the QEMU', async () => {
    const img = path.join(d.dir, 'crash.qcow2');
    await d.ok(['image-create', img, '8m', '--format', 'qcow2']);
    const pid = (await d.row('sa'))!.pid;
    await d.stop();
    await d.start({ env: { XENO_TEST_CRASH_AT: 'block-attach:plugged' } });
    const cut = await d.xeno(['block-attach', 'sa', `format=qcow2, vdev=xvdd, access=rw, target=${img}`]);
    assert.notEqual(cut.code, 0, 'xenod died in the middle of the attach');
    await d.waitExit();
    await d.start({ env: { XENO_TEST_CRASH_AT: 'block-detach:released' } });
    assert.equal((await d.row('sa'))!.pid, pid, 'the guest ran on, adopted');
    const row = (await blk('sa', 'xvdd'))!;
    assert.equal(row?.inserted, img, 'the disk QEMU had plugged is in the config');
    assert.equal(row.format, 'qcow2');
    assert.equal(row.access, 'rw');
    assert.match(await guestDev('sa', 'vda'), /^\/dev\/vda$/m);
    const cut2 = await d.xeno(['block-detach', 'sa', 'xvdd']);
    assert.notEqual(cut2.code, 0, 'xenod died in the middle of the detach');
    await d.waitExit();
    await d.start();
    assert.equal(await blk('sa', 'xvdd'), undefined, 'the disk QEMU had let go is out of the config');
    assert.ok(!imageLocked(img), 'and closed');
    assert.doesNotMatch(getfacl(img), QEMU_ACL, 'and its ACL put back');
    await d.ok(['block-attach', 'sa', `format=qcow2, vdev=xvdd, access=rw, target=${img}`]);
    await d.ok(['block-detach', 'sa', 'xvdd']);
  });

  it("a thin clone of a base image boots and takes the guest's writes; the base stays byte-identical", async () => {
    const base = d.privateDisk('base.ext4');
    const baseHash = sha(base);
    const clone = path.join(d.dir, 'clone.qcow2');
    await d.ok(['image-create', clone, '--backing', base]);
    const info = JSON.parse(await d.ok(['image-info', clone, '--json'])) as ImageInfo;
    assert.deepEqual(info.chain.map((l) => [l.filename, l.format]), [[clone, 'qcow2'], [base, 'raw']]);
    await d.createGuest('sc', { disk: `[ 'format=qcow2, vdev=xvda, access=rw, target=${clone}' ]` });
    await d.waitConsole('sc', /xeno-guest: mounted \/dev\/vda/, 240_000);
    const w = await d.guestRun('sc', `echo ${marker} > /mnt/clone-note && sync && cat /mnt/clone-note`, 120_000);
    assert.match(w, new RegExp(marker));
    await d.ok(['destroy', 'sc']);
    assert.equal(sha(base), baseHash, 'the base image is unchanged');
    const cmp = (() => {
      try {
        execFileSync('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', clone, base], { stdio: 'pipe' });
        return 0;
      } catch (e) {
        return (e as { status: number }).status;
      }
    })();
    assert.equal(cmp, 1, 'qemu-img compare: the clone now differs from its base');
    assert.ok(GUEST.disk);
  });
});
