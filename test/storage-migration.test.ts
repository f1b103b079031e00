/**
 * Storage and migration without --copy-storage on real xenods and a real guest (issue 12): a disk
 * attached at run time travels in the config and the target opens it; a read-write disk with a
 * cache mode unsafe on shared storage is refused; a target that sees a DIFFERENT file at the same
 * path (a mount namespace binds another directory over the shared one) is refused by the disk
 * identity check, the guest running on at the source each time. A source xenod killed right after
 * the target's ok (crash point migrate-out:confirmed) drops the snapshot records at its restart.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { copyFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BlockRow } from '../src/toolstack/block.js';
import { TestDaemon, freePort } from './helpers/harness.js';

describe('storage across a migration between two real xenods', { timeout: 1_200_000 }, () => {
  const keys = mkdtempSync(path.join(tmpdir(), 'xeno-stmig-keys-'));
  const key = path.join(keys, 'k.psk');
  writeFileSync(key, randomBytes(32).toString('hex') + '\n', { mode: 0o600 });
  // the "shared storage" both hosts see, and what a host without it has at the same path
  const shared = mkdtempSync(path.join(tmpdir(), 'xeno-shared-'));
  const elsewhere = mkdtempSync(path.join(tmpdir(), 'xeno-elsewhere-'));
  const data = path.join(shared, 'data.qcow2');
  const daemons: TestDaemon[] = [];
  const ports: number[] = [];
  let src: TestDaemon;
  let tgt: TestDaemon;
  let notShared: TestDaemon;
  const marker = `XENO-MIG-${Math.random().toString(36).slice(2, 10)}`;

  async function daemon(wrap?: string[]): Promise<TestDaemon> {
    const port = await freePort();
    ports.push(port);
    const configText = ['(xend-relocation-server yes)', `(xend-relocation-port ${port})`, "(xend-relocation-address '127.0.0.1')", `(xeno-relocation-key-file '${key}')`].join('\n') + '\n';
    const d = new TestDaemon({ configText, wrap });
    daemons.push(d);
    await d.start();
    return d;
  }
  const blk = async (d: TestDaemon, dom: string, vdev: string) => (JSON.parse(await d.ok(['block-list', dom, '--json'])) as BlockRow[]).find((b) => b.vdev === vdev);
  const stillAtSource = async (what: string) => {
    assert.equal((await src.row('sm'))?.state, 'running', `${what}: the guest runs on at the source`);
    assert.equal((await tgt.row('sm')), undefined, `${what}: nothing on the target`);
    assert.equal((await notShared.row('sm')), undefined, `${what}: nothing on the other target`);
  };

  before(async () => {
    src = await daemon();
    tgt = await daemon();
    // its own mount namespace, where `shared` is really another directory
    notShared = await daemon(['unshare', '-m', '--propagation', 'private', 'sh', '-c', `mount --bind '${elsewhere}' '${shared}' && exec "$0" "$@"`]);
    await src.ok(['image-create', data, '16m']);
    copyFileSync(data, path.join(elsewhere, 'data.qcow2')); // the same bytes, not the same disk
    await src.createGuest('sm');
    await src.waitConsole('sm', /xeno-guest: up/, 240_000);
  });
  after(async () => {
    await Promise.all(daemons.map((d) => d.cleanup()));
    for (const dir of [keys, shared, elsewhere]) rmSync(dir, { recursive: true, force: true });
  });

  it('a read-write disk with cache=writeback is refused for a shared-storage migration', async () => {
    await src.ok(['block-attach', 'sm', `format=qcow2, vdev=xvdb, access=rw, cache=writeback, target=${data}`]);
    assert.equal((await blk(src, 'sm', 'xvdb'))!.cache, 'writeback');
    const r = await src.xeno(['migrate', 'sm', '127.0.0.1', '-l', '-p', String(ports[1])]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /disk xvdb uses cache=writeback, unsafe for a migration on shared storage.*or --force/);
    await stillAtSource('unsafe cache');
    await src.ok(['block-detach', 'sm', 'xvdb']);
    await src.ok(['block-attach', 'sm', `format=qcow2, vdev=xvdb, access=rw, target=${data}`]);
    assert.equal((await blk(src, 'sm', 'xvdb'))!.cache, 'none');
  });

  it('a target that has another file at the same path is refused (disk identity, not the path)', async () => {
    const r = await src.xeno(['migrate', 'sm', '127.0.0.1', '-l', '-p', String(ports[2])]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /disk xvdb: .*data\.qcow2 on the target is not the source's disk \(no xeno identity sidecar here/);
    await stillAtSource('other disk');
  });

  it('a snapshot with memory is refused for a migration (its RAM file stays on this host), and the guest is untouched', async () => {
    await src.ok(['snapshot-create', 'sm', 'with-ram', '--memory']);
    const r = await src.xeno(['migrate', 'sm', '127.0.0.1', '-l', '-p', String(ports[1])]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /snapshot\(s\) with-ram of sm hold RAM state in this host's state dir, which a migration does not carry: delete them first/);
    await stillAtSource('memory snapshot');
    await src.ok(['snapshot-delete', 'sm', 'with-ram']);
  });

  it('the attached disk and its snapshot tree travel: the target opens the same overlay, lists the tree, and merges it while the guest runs', async () => {
    // a disk-only snapshot first: the guest then writes to an overlay beside data.qcow2 (shared too)
    await src.ok(['snapshot-create', 'sm', 'pre-mig']);
    const overlay = (await blk(src, 'sm', 'xvdb'))!.inserted!;
    assert.match(overlay, /data\.qcow2\.snap-[0-9a-f]{8}\.qcow2$/);
    await src.guestRun('sm', `i=0; while [ ! -b /dev/vda ] && [ $i -lt 300 ]; do sleep 0.2; i=$((i+1)); done; printf '${marker}' > /tmp/m; dd if=/tmp/m of=/dev/vda bs=512 count=1 conv=sync 2>/dev/null; sync; echo ok`, 120_000);
    await src.ok(['migrate', 'sm', '127.0.0.1', '-l', '-p', String(ports[1])], {});
    assert.equal(await src.row('sm'), undefined);
    const b = (await blk(tgt, 'sm', 'xvdb'))!;
    assert.equal(b.inserted, overlay, "the target's QEMU has the attached disk's overlay open");
    const got = await tgt.guestRun('sm', 'echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/vda bs=512 count=1 2>/dev/null | head -c 17', 120_000);
    assert.match(got, new RegExp(marker));
    assert.match(await tgt.ok(['snapshot-list', 'sm']), /^pre-mig \* .* disks only {2}\(running\)$/m, 'the tree came along');
    const left = new Database(path.join(src.stateDir, 'xeno.db'), { readonly: true });
    assert.deepEqual(left.prepare(`SELECT name FROM snapshots WHERE domain = 'sm'`).all(), [], 'the source forgot it');
    left.close();
    assert.match(await tgt.ok(['snapshot-delete', 'sm', 'pre-mig']), /xvdb: .*\.snap-[0-9a-f]{8}\.qcow2 merged into .*data\.qcow2$/m);
    assert.equal((await blk(tgt, 'sm', 'xvdb'))!.inserted, data, 'the guest writes to data.qcow2 again');
    assert.ok(!existsSync(overlay), 'the merged overlay is gone');
    assert.match(await tgt.guestRun('sm', 'echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/vda bs=512 count=1 2>/dev/null | head -c 17', 120_000), new RegExp(marker));
  });

  it("the source xenod killed between the target's ok and forgetting the tree: at its restart the stale records are dropped, the guest can come back with its tree", async () => {
    // the guest is on tgt now: it migrates back to src, tgt's xenod dies right after src's ok
    await tgt.ok(['snapshot-create', 'sm', 'back']);
    const treeOf = (d: TestDaemon) => {
      const db = new Database(path.join(d.stateDir, 'xeno.db'), { readonly: true });
      const rows = db.prepare(`SELECT name FROM snapshots WHERE domain = 'sm'`).all();
      db.close();
      return rows;
    };
    await tgt.stop();
    await tgt.start({ env: { XENO_TEST_CRASH_AT: 'migrate-out:confirmed' } });
    const r = await tgt.xeno(['migrate', 'sm', '127.0.0.1', '-l', '-p', String(ports[0])], { timeoutMs: 600_000 });
    assert.notEqual(r.code, 0, 'its xenod died under the command');
    await tgt.waitExit();
    assert.equal((await src.row('sm'))?.state, 'running', 'the guest runs at src, which took it over');
    assert.match(await src.ok(['snapshot-list', 'sm']), /^back \* .* disks only {2}\(running\)$/m, 'with its tree');
    assert.deepEqual(treeOf(tgt), [{ name: 'back' }], 'the killed xenod had not forgotten the tree yet');
    await tgt.start();
    assert.equal(await tgt.row('sm'), undefined, 'the handed-over copy was released');
    assert.deepEqual(treeOf(tgt), [], 'and its snapshot records dropped');
    assert.match(tgt.log, /sm \(\d+\) had been handed over to 127\.0\.0\.1:\d+ when xenod stopped: the target owns it, the copy here was released \(its snapshot records back with it\)/);
    assert.match(await src.ok(['snapshot-list', 'sm']), /^back \* .* disks only {2}\(running\)$/m, "src's tree is intact");
    // converged: a stale tree on tgt would refuse the guest coming back (it holds snapshots of that name)
    await src.ok(['migrate', 'sm', '127.0.0.1', '-l', '-p', String(ports[1])]);
    assert.match(await tgt.ok(['snapshot-list', 'sm']), /^back \* .* disks only {2}\(running\)$/m);
    assert.deepEqual(treeOf(src), [], 'src forgot it in turn');
    assert.match(await tgt.ok(['snapshot-delete', 'sm', 'back']), /xvdb: .*\.snap-[0-9a-f]{8}\.qcow2 merged into .*data\.qcow2$/m);
  });
});
