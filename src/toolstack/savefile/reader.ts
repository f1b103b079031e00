/**
 * Reads a save file: openSaveFile() checks everything that can be checked without reading the
 * payload (magic, version, header checksum, trailer present, sizes consistent), so a restore can
 * refuse a bad file before creating anything; streamPayload() then streams the payload into QEMU
 * once, hashing it on the way, and checks the trailer's SHA-256 at the end. The guest must be
 * resumed only after streamPayload() resolves.
 */
import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { XenoError, errorMessage, isXenoError } from '../../common/errors.js';
import {
  HEADER_PREFIX_LEN,
  TRAILER_LEN,
  decodeHeader,
  decodeTrailer,
  headerLength,
  type ProgressFn,
  type SaveFileInfo,
} from './format.js';

async function openFile(file: string): Promise<FileHandle> {
  try {
    return await open(file, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new XenoError('NO_SUCH_FILE', `save file ${file} does not exist`);
    if (code === 'EISDIR') throw new XenoError('BAD_REQUEST', `${file} is a directory, not a save file`);
    throw new XenoError('HOST_ERROR', `cannot read ${file}: ${errorMessage(e)}`);
  }
}

async function readAt(fh: FileHandle, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  let got = 0;
  while (got < length) {
    const { bytesRead } = await fh.read(buf, got, length - got, position + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return buf.subarray(0, got);
}

/** Parse and check a save file's header and trailer; throws XenoError SAVE_FORMAT with the reason. */
export async function openSaveFile(file: string): Promise<SaveFileInfo> {
  const abs = path.resolve(file);
  const fh = await openFile(abs);
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new XenoError('BAD_REQUEST', `${abs} is not a regular file`);
    const size = st.size;
    const prefix = await readAt(fh, 0, HEADER_PREFIX_LEN);
    const hlen = headerLength(prefix, abs, size);
    const headerRaw = await readAt(fh, 0, hlen);
    const { header, formatVersion } = decodeHeader(headerRaw, abs);
    if (size < hlen + TRAILER_LEN) {
      throw new XenoError('SAVE_FORMAT', `${abs} is truncated: ${size} bytes, no room for a trailer after its ${hlen}-byte header (an interrupted save?)`);
    }
    const trailer = decodeTrailer(await readAt(fh, size - TRAILER_LEN, TRAILER_LEN), abs);
    const held = size - hlen - TRAILER_LEN;
    if (trailer.payloadLength !== held) {
      throw new XenoError('SAVE_FORMAT', `${abs} is truncated or corrupted: its trailer records ${trailer.payloadLength} payload bytes, the file holds ${held}`);
    }
    return {
      path: abs,
      formatVersion,
      header,
      headerRaw,
      payloadOffset: hlen,
      payloadLength: trailer.payloadLength,
      fileSize: size,
      trailerSha256: trailer.sha256.toString('hex'),
    };
  } finally {
    await fh.close();
  }
}

export interface StreamOptions {
  /** End the sink when the payload has been written (default true). */
  end?: boolean;
  /** Read size (default 1 MiB). */
  chunkSize?: number;
}

/**
 * Stream the payload of a file opened with openSaveFile() into `sink`, hashing it, then check the
 * trailer. Rejects with SAVE_FORMAT when the file is shorter than announced or the checksum does not
 * match (the sink has then received bytes that must not be trusted: discard what it built).
 */
export async function streamPayload(
  file: string,
  info: SaveFileInfo,
  sink: Writable,
  onProgress?: ProgressFn,
  opts: StreamOptions = {},
): Promise<{ bytes: number; sha256: string }> {
  const abs = path.resolve(file);
  const fh = await openFile(abs);
  try {
    const st = await fh.stat();
    if (st.size !== info.fileSize) {
      throw new XenoError('SAVE_FORMAT', `${abs} changed since it was checked (${info.fileSize} bytes then, ${st.size} now)`);
    }
    const hash = createHash('sha256').update(info.headerRaw);
    let bytes = 0;
    const total = info.payloadLength;
    const hasher = new Transform({
      highWaterMark: 4 * 1024 * 1024,
      transform(chunk: Buffer, _enc, cb) {
        hash.update(chunk);
        bytes += chunk.length;
        onProgress?.({ bytes, done: bytes, total });
        cb(null, chunk);
      },
    });
    const highWaterMark = opts.chunkSize ?? 1024 * 1024;
    const src =
      total > 0
        ? fh.createReadStream({ start: info.payloadOffset, end: info.payloadOffset + total - 1, highWaterMark, autoClose: false })
        : Readable.from([]);
    try {
      await pipeline(src, hasher, sink, { end: opts.end ?? true });
    } catch (e) {
      if (isXenoError(e)) throw e;
      throw new XenoError('HOST_ERROR', `streaming ${abs} failed after ${bytes} of ${total} bytes: ${errorMessage(e)}`);
    }
    if (bytes !== total) {
      throw new XenoError('SAVE_FORMAT', `${abs} is truncated: ${bytes} of ${total} payload bytes could be read`);
    }
    const trailerBuf = await readAt(fh, info.payloadOffset + total, TRAILER_LEN);
    const trailer = decodeTrailer(trailerBuf, abs);
    const digest = hash.digest();
    if (trailer.payloadLength !== total || !digest.equals(trailer.sha256)) {
      throw new XenoError('SAVE_FORMAT', `${abs} is corrupted: its SHA-256 checksum does not match the trailer`, {
        expected: trailer.sha256.toString('hex'),
        actual: digest.toString('hex'),
      });
    }
    return { bytes, sha256: digest.toString('hex') };
  } finally {
    await fh.close();
  }
}
