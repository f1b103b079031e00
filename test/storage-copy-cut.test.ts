/**
 * `xeno migrate --copy-storage` with the network link cut while the disk is mirrored: two real
 * xenods in network namespaces of their own joined by a veth pair (relocation-lab.ts), the NBD
 * stream slowed by nft so that the mirror of a 512 MiB thin qcow2 holding 32 MiB of random bytes
 * lasts long enough, then 100 % loss both ways once the API's progress says the mirror is under
 * way (status `mirroring`, some bytes copied, some left). The migration fails with the session's
 * silence error instead of hanging; the source guest runs on in the same QEMU and writes to its
 * disk; the target, once its own end of the session times out, has no domain, no QEMU and no image
 * left. With the link whole again a second --copy-storage of the same guest succeeds (nothing stale
 * left in the source's QEMU blocks it) and the target reads what the guest wrote after the cut.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, ftruncateSync, mkdtempSync, openSync, readdirSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { processGone } from '../src/host/proc.js';
import type { TestDaemon } from './helpers/harness.js';
import { B, PORT, RelocationLab, until } from './helpers/relocation-lab.js';

const MiB = 1024 * 1024;
const DISK_MIB = 512;
const HEAD_MIB = 32;

interface Line {
  event: 'progress' | 'result' | 'error';
  status?: string;
  transferred?: number;
  remaining?: number;
  error?: { code: string; message: string };
}

describe('migrate --copy-storage with the link cut during the mirror', { timeout: 1_500_000 }, () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'xeno-sccut-'));
  const lab = new RelocationLab(dir);
  let a: TestDaemon;
  let b: TestDaemon;
  let disk: string;
  const marker = `XENO-CUT-${Math.random().toString(36).slice(2, 10)}`;
  const imagesOf = (d: TestDaemon) => (existsSync(path.join(d.dir, 'xeno-images', 'cs')) ? readdirSync(path.join(d.dir, 'xeno-images', 'cs')) : []);
  /** The guest's first sector after the page cache is dropped. */
  const firstSector = (d: TestDaemon) => d.guestRun('cs', 'echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/vda bs=512 count=1 2>/dev/null | head -c 17', 120_000);

  before(async () => {
    await lab.setup();
    // Both ends give the cut link up after 15 s of silence (60 s by default).
    [a, b] = await Promise.all([lab.daemon(lab.nsA, ['(xeno-relocation-timeout 15)']), lab.daemon(lab.nsB, ['(xeno-relocation-timeout 15)'])]);
    const raw = path.join(a.dir, 'cs-initial.raw');
    const fd = openSync(raw, 'w');
    ftruncateSync(fd, DISK_MIB * MiB);
    writeSync(fd, randomBytes(HEAD_MIB * MiB), 0, HEAD_MIB * MiB, 0);
    closeSync(fd);
    disk = path.join(a.dir, 'cs.qcow2');
    execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, disk]);
    rmSync(raw);
    await a.createGuest('cs', { disk: `[ 'format=qcow2,vdev=xvda,access=rw,target=${disk}' ]` });
    await a.waitConsole('cs', /heartbeat 2\r?\n/, 120_000);
  });
  after(async () => {
    await lab.teardown();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the link cut while the disk is mirrored: the migration fails, the source guest runs and writes on, the target is left empty', async (t) => {
    const pid = (await a.row('cs'))!.pid!;
    await lab.link('slow');
    const lines: Line[] = [];
    const migration = a.client.requestLines('POST', '/v1/domains/cs/migrate', { host: B, live: true, copyStorage: true, progress: true }, (l) => lines.push(JSON.parse(l) as Line));
    migration.catch(() => undefined);
    const mirroring = () => [...lines].reverse().find((l) => l.status === 'mirroring' && l.transferred! > 0 && l.remaining! > 0);
    await until('the API reports the mirror under way (bytes copied, bytes left)', () => mirroring() !== undefined || lines.some((l) => l.event !== 'progress'), 300_000, 100);
    assert.ok(mirroring(), `the mirror was seen in progress before the cut: ${JSON.stringify(lines.slice(-3))}`);
    assert.ok(await b.row('cs'), 'the target holds the incoming domain');
    assert.ok(imagesOf(b).includes('cs.qcow2'), 'and its disk being copied');
    await lab.link('cut');
    const cutAt = Date.now();
    t.diagnostic(`cut with ${(mirroring()!.transferred! / MiB).toFixed(1)} MiB mirrored, ${(mirroring()!.remaining! / MiB).toFixed(1)} MiB left`);
    // a hang is a failure: the session's silence (15 s here) ends it, with room for the load of the machine
    const hung = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the migration did not end within 300 s of the cut')), 300_000).unref());
    await Promise.race([migration, hung]);
    t.diagnostic(`the migration failed ${((Date.now() - cutAt) / 1000).toFixed(1)} s after the cut`);
    const end = lines.at(-1)!;
    assert.equal(end.event, 'error', `the migration failed: ${JSON.stringify(end)}`);
    assert.match(end.error!.message, new RegExp(`^migration of cs to ${B.replace(/\./g, '\\.')}:${PORT} failed: no word from the target .* for 15 s.*; the guest keeps running here$`));
    const row = (await a.row('cs'))!;
    assert.equal(row.state, 'running');
    assert.equal(row.pid, pid, 'the same QEMU runs the guest');
    assert.deepEqual((await a.client.get<{ config: { disks: Array<{ target: string }> } }>('/v1/domains/cs')).config.disks.map((d) => d.target), [disk], 'on its own disk');
    await a.waitBeatsPast('cs', a.lastHeartbeat('cs'), 2, 120_000);
    await a.guestRun('cs', `printf '${marker}' > /tmp/m; dd if=/tmp/m of=/dev/vda bs=512 count=1 conv=sync,fsync 2>/dev/null; echo written`, 120_000);
    assert.match(await firstSector(a), new RegExp(marker), 'its disk still takes writes');
    // the target's end of the session times out too: its half-made domain, QEMU and disk go
    const incoming = b.qemusOnHost();
    await until('the target has no domain, no QEMU and no image left', async () => (await b.row('cs')) === undefined && b.qemusOnHost().length === 0 && imagesOf(b).length === 0, 240_000, 500);
    for (const p of incoming) assert.ok(processGone(p), `the target's QEMU ${p} is gone`);
    t.diagnostic(`the target was empty ${((Date.now() - cutAt) / 1000).toFixed(1)} s after the cut`);
  });

  it('the link whole again: a second --copy-storage of the same guest succeeds and carries what it wrote after the cut', async () => {
    await lab.link('whole');
    const out = await a.ok(['migrate', 'cs', B, '-l', '--copy-storage']);
    assert.match(out, /^Migrated domain cs to 10\.199\.0\.2:\d+ \(live, domain \d+ there, running\)/m);
    assert.equal(await a.row('cs'), undefined, 'it left the source');
    const there = await b.client.get<{ config: { disks: Array<{ target: string }> } }>('/v1/domains/cs');
    assert.equal(there.config.disks[0]!.target, path.join(b.dir, 'xeno-images', 'cs', 'cs.qcow2'));
    assert.match(await firstSector(b), new RegExp(marker));
  });
});
