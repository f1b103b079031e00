import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, readSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { XenoError } from '../../common/errors.js';
import type { DomainConfig } from '../../model/domain-config.js';
import {
  HEADER_PREFIX_LEN,
  HASH_LEN,
  TRAILER_LEN,
  compareQemuVersions,
  decodeHeader,
  encodeHeader,
  type SaveHeader,
} from './format.js';
import { PreparedPayload, openPayloadFd, openSaveFile, streamPayload } from './reader.js';
import { SaveWriter, partialPathFor } from './writer.js';
import { skipOrFail } from '../../../test/helpers/skips.js';

const config: DomainConfig = {
  name: 'web1', type: 'pvh', memory: 256, maxmem: 256, vcpus: 1, maxvcpus: 1, kernel: '/boot/vmlinuz',
  disks: [{ target: '/srv/web1.img', format: 'raw', vdev: 'xvda', access: 'rw', devtype: 'disk' }], vifs: [],
  onPoweroff: 'destroy', onReboot: 'restart', onCrash: 'destroy',
};

const header: SaveHeader = {
  xenoVersion: '0.1.0', config, name: 'web1', uuid: '6f1b1a52-7c1e-4b9e-8a65-0d6b7f8e9a10', machineType: 'pc-i440fx-7.2',
  qemuVersion: '7.2.22', accel: 'tcg', state: 'running', memoryMb: 256, maxmemMb: 256, created: new Date(0).toISOString(),
};

function rejectsFormat(p: Promise<unknown>, re: RegExp): Promise<void> {
  return assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof XenoError, String(e));
    assert.equal(e.code, 'SAVE_FORMAT', e.message);
    assert.match(e.message, re);
    return true;
  });
}

class Collect extends Writable {
  chunks: Buffer[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.chunks.push(chunk);
    cb();
  }
  get data(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

/** Payload that looks a bit like a migration stream: random runs and zero runs, in uneven chunks. */
function payloadChunks(total: number): Buffer[] {
  const out: Buffer[] = [];
  let n = 0;
  let i = 0;
  while (n < total) {
    const len = Math.min(total - n, 1 + ((i * 7919) % 200_000));
    out.push(i % 3 === 0 ? Buffer.alloc(len) : randomBytes(len));
    n += len;
    i++;
  }
  return out;
}

async function writeSave(file: string, chunks: Buffer[], h: SaveHeader = header) {
  const progress: number[] = [];
  const w = await SaveWriter.open(file, h, { onBytes: (b) => progress.push(b) });
  await w.consume(Readable.from(chunks));
  const r = await w.finish();
  return { r, progress };
}

describe('save file format', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'xeno-savefile-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('round-trips header and payload, durably renamed, mode 0600', async () => {
    const file = path.join(dir, 'rt.save');
    const chunks = payloadChunks(3 * 1024 * 1024 + 17);
    const payload = Buffer.concat(chunks);
    const { r, progress } = await writeSave(file, chunks);
    assert.equal(r.payloadBytes, payload.length);
    assert.equal(r.size, statSync(file).size);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.ok(!existsSync(partialPathFor(file)));
    assert.equal(progress.at(-1), payload.length);

    const info = await openSaveFile(file);
    assert.deepEqual(info.header, header);
    assert.equal(info.formatVersion, 1);
    assert.equal(info.payloadLength, payload.length);
    assert.equal(info.fileSize, r.size);
    assert.equal(info.trailerSha256, r.sha256);

    const sink = new Collect();
    const seen: number[] = [];
    const res = await streamPayload(file, info, sink, (p) => {
      assert.equal(p.total, payload.length);
      seen.push(p.done);
    });
    assert.equal(res.bytes, payload.length);
    assert.equal(res.sha256, r.sha256);
    assert.ok(sink.data.equals(payload));
    assert.equal(seen.at(-1), payload.length);
  });

  it('round-trips an empty payload', async () => {
    const file = path.join(dir, 'empty.save');
    await writeSave(file, []);
    const info = await openSaveFile(file);
    assert.equal(info.payloadLength, 0);
    const sink = new Collect();
    await streamPayload(file, info, sink);
    assert.equal(sink.data.length, 0);
  });

  it('overwrites an existing FILE only once the new one is complete', async () => {
    const file = path.join(dir, 'over.save');
    await writeSave(file, [Buffer.from('first')]);
    const w = await SaveWriter.open(file, header);
    await w.consume(Readable.from([Buffer.from('second one')]));
    // while the new save is written (and after a failed one), FILE still holds the old complete save
    const during = await openSaveFile(file);
    assert.equal(during.payloadLength, 5);
    const sink = new Collect();
    await streamPayload(file, during, sink);
    assert.equal(sink.data.toString(), 'first');
    await w.finish();
    const info = await openSaveFile(file);
    assert.equal(info.payloadLength, 10);
    const failed = await SaveWriter.open(file, header);
    await failed.abort();
    assert.equal((await openSaveFile(file)).payloadLength, 10, 'an aborted save leaves the previous FILE alone');
  });

  it('detects flipped payload bytes with the checksum, at the end of the stream', async () => {
    const file = path.join(dir, 'flip.save');
    const chunks = payloadChunks(1024 * 1024);
    await writeSave(file, chunks);
    const buf = readFileSync(file);
    const info0 = await openSaveFile(file);
    for (const at of [info0.payloadOffset, info0.payloadOffset + 12345, buf.length - TRAILER_LEN - 1]) {
      const bad = Buffer.from(buf);
      bad[at] = bad[at]! ^ 0x5a;
      const f2 = path.join(dir, `flip-${at}.save`);
      writeFileSync(f2, bad);
      const info = await openSaveFile(f2); // header and trailer are intact
      await rejectsFormat(streamPayload(f2, info, new Collect()), /checksum does not match/);
    }
  });

  it('detects a flipped stored checksum and flipped header bytes', async () => {
    const file = path.join(dir, 'fliph.save');
    await writeSave(file, [randomBytes(5000)]);
    const buf = readFileSync(file);
    const sumAt = buf.length - 1;
    const bad = Buffer.from(buf);
    bad[sumAt] = bad[sumAt]! ^ 1;
    writeFileSync(file, bad);
    await rejectsFormat(streamPayload(file, await openSaveFile(file), new Collect()), /checksum does not match/);

    const h = Buffer.from(buf);
    h[HEADER_PREFIX_LEN + 3] = h[HEADER_PREFIX_LEN + 3]! ^ 0x20; // inside the JSON
    writeFileSync(file, h);
    await rejectsFormat(openSaveFile(file), /header checksum/);

    const t = Buffer.from(buf);
    t[buf.length - TRAILER_LEN] = 0x41; // trailer magic
    writeFileSync(file, t);
    await rejectsFormat(openSaveFile(file), /no XENOEND! trailer/);
  });

  it('refuses truncated files at every interesting offset', async () => {
    const file = path.join(dir, 'full.save');
    await writeSave(file, payloadChunks(300_000));
    const buf = readFileSync(file);
    const info = await openSaveFile(file);
    const hlen = info.payloadOffset;
    const offsets = [0, 1, 7, 8, 12, 15, HEADER_PREFIX_LEN, HEADER_PREFIX_LEN + 10, hlen - HASH_LEN, hlen - 1, hlen, hlen + 1,
      hlen + 150_000, buf.length - TRAILER_LEN, buf.length - TRAILER_LEN + 5, buf.length - 1];
    for (const n of offsets) {
      const f = path.join(dir, `trunc-${n}.save`);
      writeFileSync(f, buf.subarray(0, n));
      await rejectsFormat(openSaveFile(f), /truncated/);
    }
  });

  it('opens the payload for QEMU at its first byte and hashes it beside (hash-only), refusing flips and swaps', async () => {
    const file = path.join(dir, 'fd.save');
    const chunks = payloadChunks(3 * 1024 * 1024 + 17); // not a whole number of read chunks
    await writeSave(file, chunks);
    const info = await openSaveFile(file);
    const opened = openPayloadFd(info);
    try {
      // What QEMU reads from its copy of the descriptor: the payload, from the file position on.
      const got = Buffer.alloc(info.payloadLength);
      let n = 0;
      while (n < got.length) {
        const r = readSync(opened.fd, got, n, got.length - n, null);
        if (r === 0) break;
        n += r;
      }
      assert.ok(got.equals(Buffer.concat(chunks)), 'the descriptor is positioned at the payload');
    } finally {
      closeSync(opened.fd);
    }
    const hashed = await PreparedPayload.start(file, info, { hashOnly: true, sameAs: opened });
    assert.equal(await hashed.next(), null, 'nothing is queued: QEMU reads the file itself');
    assert.equal(await hashed.verify(), info.trailerSha256);
    await hashed.close();

    const bad = readFileSync(file);
    bad[info.payloadOffset + 2 * 1024 * 1024 + 5] ^= 0x10;
    const flipped = path.join(dir, 'fd-flip.save');
    writeFileSync(flipped, bad);
    const fi = await openSaveFile(flipped);
    const h2 = await PreparedPayload.start(flipped, fi, { hashOnly: true });
    await rejectsFormat(h2.verify(), /checksum does not match/);
    await h2.close();

    // The hash must be of the file QEMU was given, and the header read through that descriptor the one checked.
    await rejectsFormat(PreparedPayload.start(flipped, fi, { hashOnly: true, sameAs: opened }), /was replaced since it was opened/);
    writeFileSync(flipped, Buffer.concat([Buffer.from('XENOSAVE'), bad.subarray(8, 20), Buffer.from('x'), bad.subarray(21)]));
    assert.throws(() => openPayloadFd(fi), /changed since it was checked/);
  });

  it('notices a file truncated between the check and the stream', async () => {
    const file = path.join(dir, 'shrink.save');
    await writeSave(file, payloadChunks(200_000));
    const info = await openSaveFile(file);
    truncateSync(file, info.fileSize - 1000);
    await rejectsFormat(streamPayload(file, info, new Collect()), /changed since it was checked/);
  });

  it('refuses another magic, another version, a bad header', async () => {
    const file = path.join(dir, 'v.save');
    await writeSave(file, [Buffer.from('payload')]);
    const buf = readFileSync(file);

    const v2 = Buffer.from(buf);
    v2.writeUInt32LE(2, 8);
    writeFileSync(file, v2);
    await rejectsFormat(openSaveFile(file), /format version 2; this xeno reads version 1 only/);

    const m = Buffer.from(buf);
    m.write('QEVM', 0, 'latin1');
    writeFileSync(file, m);
    await rejectsFormat(openSaveFile(file), /not a xeno save file/);

    writeFileSync(file, Buffer.from('just some text file that is long enough to hold a header\n'));
    await rejectsFormat(openSaveFile(file), /not a xeno save file/);

    const huge = Buffer.from(buf);
    huge.writeUInt32LE(0xffffffff, 12);
    writeFileSync(file, huge);
    await rejectsFormat(openSaveFile(file), /corrupted header/);

    // A well-formed, self-consistent header with missing fields.
    const raw = encodeHeader({ ...header, state: 'frozen' as 'running' });
    assert.throws(() => decodeHeader(raw), /state must be running or paused/);

    // The config's whole shape goes through the one validator; unknown header keys are dropped.
    const vdev = encodeHeader({ ...header, config: { ...config, disks: [{ ...config.disks[0]!, vdev: 'xvda,addr=0x1f' }] } });
    assert.throws(() => decodeHeader(vdev), /invalid header: config: disks\[0\]\.vdev: "xvda,addr=0x1f" is not a guest disk name/);
    const extra = encodeHeader({ ...header, config: { ...config, qemuArgs: ['-S'] } as DomainConfig });
    assert.throws(() => decodeHeader(extra), /invalid header: config: qemuArgs: unknown field/);
    const later = decodeHeader(encodeHeader({ ...header, future: { deep: [[[1]]] } } as SaveHeader)).header;
    assert.deepEqual(later, header);
  });

  it('reports a missing file and a directory clearly', async () => {
    await assert.rejects(openSaveFile(path.join(dir, 'nope.save')), (e: unknown) => (e as XenoError).code === 'NO_SUCH_FILE');
    await assert.rejects(openSaveFile(dir), (e: unknown) => (e as XenoError).code === 'BAD_REQUEST');
  });

  it('refuses to start while FILE.partial exists, and a missing directory', async () => {
    const file = path.join(dir, 'busy.save');
    writeFileSync(partialPathFor(file), 'someone else');
    await assert.rejects(SaveWriter.open(file, header), (e: unknown) => (e as XenoError).code === 'BUSY' && /already exists/.test((e as Error).message));
    rmSync(partialPathFor(file));
    await assert.rejects(SaveWriter.open(path.join(dir, 'no', 'such', 'x.save'), header), (e: unknown) => (e as XenoError).code === 'NO_SUCH_FILE');
  });

  it('removes the partial file when the stream fails or the save is aborted', async () => {
    const file = path.join(dir, 'fail.save');
    const w = await SaveWriter.open(file, header);
    assert.ok(existsSync(partialPathFor(file)));
    const src = new Readable({
      read() {
        this.push(randomBytes(10_000));
        setImmediate(() => this.destroy(new Error('QEMU went away')));
      },
    });
    await assert.rejects(w.consume(src), /QEMU went away/);
    assert.ok(!existsSync(partialPathFor(file)));
    assert.ok(!existsSync(file));

    const w2 = await SaveWriter.open(file, header);
    await w2.abort();
    await w2.abort();
    assert.ok(!existsSync(partialPathFor(file)));
    await assert.rejects(w2.finish());
  });

  it('fails cleanly on a full disk (tiny tmpfs) and leaves nothing behind', async (t) => {
    const mnt = path.join(dir, 'tiny');
    mkdirSync(mnt);
    if (process.getuid?.() !== 0) {
      skipOrFail(t, 'needs root to mount a tmpfs');
      return;
    }
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'xeno-test-tiny', mnt], { stdio: 'ignore' });
    try {
      const file = path.join(mnt, 'big.save');
      const w = await SaveWriter.open(file, header);
      await assert.rejects(w.consume(Readable.from(payloadChunks(4 * 1024 * 1024))), (e: unknown) => {
        assert.ok(e instanceof XenoError);
        assert.equal(e.code, 'HOST_ERROR');
        assert.match(e.message, /no space left on device/);
        return true;
      });
      assert.deepEqual(readdirSync(mnt), []);
    } finally {
      execFileSync('umount', [mnt], { stdio: 'ignore' });
    }
  });

  it('compares QEMU versions numerically', () => {
    assert.ok(compareQemuVersions('7.2.22', '8.0.0') < 0);
    assert.ok(compareQemuVersions('7.10.0', '7.2.0') > 0);
    assert.equal(compareQemuVersions('7.2', '7.2.0'), 0);
    assert.ok(compareQemuVersions('7.2.22', '7.2.5') > 0);
  });
});
