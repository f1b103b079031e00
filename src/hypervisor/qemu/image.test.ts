import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { createImage, probeImage } from './image.js';

// real qemu-img on real files
const dir = mkdtempSync(path.join(tmpdir(), 'xeno-img-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const f = (n: string) => path.join(dir, n);
const qemuImg = (...a: string[]) => execFileSync('qemu-img', a, { stdio: 'pipe' });

test('a thin clone records its base format; probeImage walks the chain with it', async () => {
  await createImage(f('base.raw'), { format: 'raw', sizeBytes: 8 << 20 });
  const base = await probeImage(f('base.raw'));
  assert.equal(base.format, 'raw');
  await createImage(f('clone.qcow2'), { format: 'qcow2', backing: base });
  const clone = await probeImage(f('clone.qcow2'));
  assert.deepEqual(clone.chain.map((l) => [l.filename, l.format, l.virtualSize]), [[f('clone.qcow2'), 'qcow2', 8 << 20], [f('base.raw'), 'raw', 8 << 20]]);
  const vetted: string[] = [];
  await probeImage(f('clone.qcow2'), { vet: (b) => vetted.push(b) });
  assert.deepEqual(vetted, [f('base.raw')], 'every backing file goes through the caller');
  await assert.rejects(probeImage(f('clone.qcow2'), { vet: () => { throw new Error('protected'); } }), /protected/);
  await assert.rejects(createImage(f('r2.raw'), { format: 'raw', backing: base }), /backing file needs --format qcow2/);
  await assert.rejects(createImage(f('nosize.qcow2'), { format: 'qcow2' }), /a SIZE is needed/);
});

test('backing files that would make QEMU probe or leave the local filesystem are refused', async () => {
  qemuImg('create', '-q', '-f', 'qcow2', '-u', '-b', 'json:{"driver":"file","filename":"/etc/hostname"}', '-F', 'raw', f('json.qcow2'), '1M');
  await assert.rejects(probeImage(f('json.qcow2')), /is not an absolute local path: refused/);
  // a backing file without a recorded format (its header extension blanked): QEMU would probe it
  qemuImg('create', '-q', '-f', 'qcow2', '-u', '-b', '/etc/hostname', '-F', 'raw', f('nofmt.qcow2'), '1M');
  const buf = readFileSync(f('nofmt.qcow2'));
  const at = buf.indexOf(Buffer.from([0xe2, 0x79, 0x2a, 0xca]));
  assert.ok(at > 0 && at < 4096);
  buf.writeUInt32BE(0x0badf00d, at); // an unknown extension, ignored by QEMU
  writeFileSync(f('nofmt.qcow2'), buf);
  await assert.rejects(probeImage(f('nofmt.qcow2')), /has no recorded format \(QEMU would have to probe it\): refused/);
  // a loop
  qemuImg('create', '-q', '-f', 'qcow2', '-u', '-b', f('loop-b.qcow2'), '-F', 'qcow2', f('loop-a.qcow2'), '1M');
  qemuImg('create', '-q', '-f', 'qcow2', '-u', '-b', f('loop-a.qcow2'), '-F', 'qcow2', f('loop-b.qcow2'), '1M');
  await assert.rejects(probeImage(f('loop-a.qcow2')), /makes a loop: refused/);
});

test('a raw file whose content is a qcow2 header is seen as qcow2 (the config guard refuses a raw spec on it)', async () => {
  qemuImg('create', '-q', '-f', 'qcow2', '-u', '-b', '/etc/shadow', '-F', 'raw', f('guest-wrote.img'), '1M');
  assert.equal((await probeImage(f('guest-wrote.img'), { format: 'raw' })).format, 'raw', 'opened as raw when told');
  assert.equal((await probeImage(f('guest-wrote.img'), { vet: () => { throw new Error('vetted'); } }).catch((e: Error) => e.message)), 'vetted', 'its backing file is vetted before anything opens it');
});
