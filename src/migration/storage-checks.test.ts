import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { directIoWorks } from '../hypervisor/qemu/disk-probe.js';
import type { DiskSpec, DomainConfig } from '../model/domain-config.js';
import { checkDiskIdentities, diskIdentities, refuseUnsafeCache } from './storage-checks.js';

// real files on this host's filesystem (O_DIRECT probed for real)
const dir = mkdtempSync(path.join(tmpdir(), 'xeno-id-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const disk = (target: string, extra: Partial<DiskSpec> = {}): DiskSpec => ({ target, format: 'raw', vdev: 'xvda', access: 'rw', devtype: 'disk', ...extra });
const cfg = (disks: DiskSpec[], extra: Partial<DomainConfig> = {}): DomainConfig => ({
  name: 'g', type: 'pv', memory: 128, maxmem: 128, vcpus: 1, maxvcpus: 1, kernel: '/k', disks, vifs: [], onPoweroff: 'destroy', onReboot: 'restart', onCrash: 'destroy', ...extra,
});

test('a read-write file: the source writes a xeno UUID sidecar once; the same file passes, a copy at the same path does not', () => {
  const img = path.join(dir, 'a.img');
  writeFileSync(img, Buffer.alloc(3 << 20, 1));
  const c = cfg([disk(img)]);
  const sent = diskIdentities(c, true);
  assert.match(sent[0]!.id!, /^[0-9a-f-]{36}$/);
  assert.equal(readFileSync(path.join(dir, '.a.img.xeno-id'), 'utf8').trim(), sent[0]!.id);
  assert.deepEqual(diskIdentities(c, true), sent, 'the sidecar is written once');
  checkDiskIdentities(c, sent);
  // "the other host": the same bytes at the same path, but not the same disk (no sidecar)
  copyFileSync(img, path.join(dir, 'b.img'));
  const moved = cfg([disk(path.join(dir, 'b.img'))]);
  assert.throws(() => checkDiskIdentities(moved, sent), /is not the source's disk \(no xeno identity sidecar here/);
  assert.ok(!existsSync(path.join(dir, '.b.img.xeno-id')), 'the target never writes a sidecar');
  assert.throws(() => checkDiskIdentities(c, undefined), /malformed prepare/);
  assert.throws(() => checkDiskIdentities(c, []), /not the source's disk/);
});

test('a read-only disk: size and the hash of its first and last MiB', () => {
  const iso = path.join(dir, 'cd.iso');
  writeFileSync(iso, Buffer.alloc(3 << 20, 7));
  const c = cfg([disk(iso, { vdev: 'hdc', devtype: 'cdrom', access: 'ro' })]);
  const sent = diskIdentities(c, true);
  assert.equal(sent[0]!.size, 3 << 20);
  assert.match(sent[0]!.sample!, /^[0-9a-f]{64}$/);
  checkDiskIdentities(c, sent);
  const b = readFileSync(iso);
  b[(3 << 20) - 1] = 0; // the last MiB differs
  writeFileSync(iso, b);
  assert.throws(() => checkDiskIdentities(c, sent), /not the source's disk/);
});

test('cache modes unsafe on shared storage are refused unless forced; read-only disks never are', () => {
  const img = path.join(dir, 'c.img');
  writeFileSync(img, Buffer.alloc(1 << 20));
  assert.throws(() => refuseUnsafeCache(cfg([disk(img, { cache: 'writeback' })]), false), /disk xvda uses cache=writeback, unsafe for a migration on shared storage/);
  assert.throws(() => refuseUnsafeCache(cfg([disk(img)], { diskCache: 'unsafe' }), false), /cache=unsafe/);
  refuseUnsafeCache(cfg([disk(img, { cache: 'writeback' })]), true);
  refuseUnsafeCache(cfg([disk(img, { cache: 'writeback', access: 'ro' })]), false);
  refuseUnsafeCache(cfg([disk(img, { cache: 'directsync' })]), false);
  // the default: none where the filesystem takes O_DIRECT (safe), writeback where not (refused)
  if (directIoWorks(img)) refuseUnsafeCache(cfg([disk(img)]), false);
  else assert.throws(() => refuseUnsafeCache(cfg([disk(img)]), false), /cache=writeback/);
});
