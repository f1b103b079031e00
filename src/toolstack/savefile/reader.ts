/**
 * Reads a save file: openSaveFile() checks everything that can be checked without reading the
 * payload (magic, version, header checksum, trailer present, sizes consistent), so a restore can
 * refuse a bad file before creating anything; streamPayload() then streams the payload into QEMU
 * once, hashing it on the way, and checks the trailer's SHA-256 at the end. The guest must be
 * resumed only after streamPayload() resolves.
 */
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Writable } from 'node:stream';
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

/** Wait until `sink` wants more; reject when it fails or goes away first. */
function drained(sink: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (e?: Error) => {
      sink.off('drain', onDrain);
      sink.off('error', onError);
      sink.off('close', onClose);
      if (e) reject(e);
      else resolve();
    };
    const onDrain = () => done();
    const onError = (e: Error) => done(e);
    const onClose = () => done(new Error('the receiving end closed before taking all the data'));
    if (sink.destroyed) return done(new Error('the receiving end is closed'));
    sink.on('drain', onDrain);
    sink.once('error', onError);
    sink.once('close', onClose);
  });
}

/**
 * Everything has been written to `sink`: end it (optionally) and wait until it has taken every
 * byte. A peer that closes once it has read the whole stream (QEMU does, after the EOF section) is
 * not a failure; one that closes with bytes still queued on our side is.
 */
function finishSink(sink: Writable, end: boolean, allTaken: () => boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const settle = () => {
      cleanup();
      if (allTaken()) resolve();
      else reject(new Error('the receiving end closed before taking all the data'));
    };
    const onFinish = () => {
      cleanup();
      resolve();
    };
    const onError = () => settle();
    const onClose = () => settle();
    const cleanup = () => {
      sink.off('finish', onFinish);
      sink.off('error', onError);
      sink.off('close', onClose);
    };
    if (sink.writableFinished || (!end && allTaken())) return resolve();
    if (sink.destroyed) return settle();
    sink.once('finish', onFinish);
    sink.on('error', onError);
    sink.once('close', onClose);
    if (end) sink.end();
    else sink.write(Buffer.alloc(0), () => settle());
  });
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
  /** A read-ahead started with preparePayload() (e.g. while QEMU was starting); consumed here. */
  prepared?: PreparedPayload;
}

export interface PrepareOptions {
  /** Read size (default 1 MiB). */
  chunkSize?: number;
  /** Bytes read and hashed ahead of the consumer (default 64 MiB). */
  readAhead?: number;
  /**
   * Only hash: QEMU reads the payload from the file itself (openPayloadFd), so nothing is queued
   * and the whole file is hashed as fast as it can be read; next() yields no chunk (it returns
   * null once the file has been read).
   */
  hashOnly?: boolean;
  /** The file must be this one (dev and inode of the descriptor QEMU was given). */
  sameAs?: { dev: number; ino: number };
}

/**
 * The payload, read once in order and hashed as it is read, up to `readAhead` bytes ahead of the
 * consumer. Started before the consumer exists (while QEMU starts up), it takes the reading and
 * most of the hashing off the restore's critical path; memory use is bounded by readAhead.
 */
export class PreparedPayload {
  private readonly hash = createHash('sha256');
  private readonly queue: Buffer[] = [];
  private queued = 0;
  private pos: number;
  private readonly end: number;
  private error?: unknown;
  private eof = false;
  private closed = false;
  private wakeReader?: () => void;
  private wakeConsumer?: () => void;
  private readonly loop: Promise<void>;
  private readonly chunkSize: number;
  private readonly readAhead: number;
  private readonly hashOnly: boolean;
  /** Bytes read (and hashed) so far. */
  readBytes = 0;
  /** Called after each read with readBytes. */
  onRead?: (bytes: number) => void;

  private constructor(
    readonly file: string,
    readonly info: SaveFileInfo,
    private readonly fh: FileHandle,
    opts: PrepareOptions,
  ) {
    this.chunkSize = opts.chunkSize ?? 1024 * 1024;
    this.readAhead = Math.max(this.chunkSize, opts.readAhead ?? 64 * 1024 * 1024);
    this.hashOnly = opts.hashOnly === true;
    this.pos = info.payloadOffset;
    this.end = info.payloadOffset + info.payloadLength;
    this.hash.update(info.headerRaw);
    this.loop = this.readLoop();
  }

  static async start(file: string, info: SaveFileInfo, opts: PrepareOptions = {}): Promise<PreparedPayload> {
    const abs = path.resolve(file);
    const fh = await openFile(abs);
    try {
      const st = await fh.stat();
      if (st.size !== info.fileSize) {
        throw new XenoError('SAVE_FORMAT', `${abs} changed since it was checked (${info.fileSize} bytes then, ${st.size} now)`);
      }
      if (opts.sameAs && (st.dev !== opts.sameAs.dev || st.ino !== opts.sameAs.ino)) {
        throw new XenoError('SAVE_FORMAT', `${abs} was replaced since it was opened for QEMU`);
      }
    } catch (e) {
      await fh.close();
      throw e;
    }
    return new PreparedPayload(abs, info, fh, opts);
  }

  private async readLoop(): Promise<void> {
    const reused = this.hashOnly ? Buffer.allocUnsafe(this.chunkSize) : undefined;
    try {
      while (this.pos < this.end && !this.closed) {
        if (this.queued >= this.readAhead) {
          await new Promise<void>((r) => (this.wakeReader = r));
          continue;
        }
        const len = Math.min(this.chunkSize, this.end - this.pos);
        const buf = reused ?? Buffer.allocUnsafe(len);
        const { bytesRead } = await this.fh.read(buf, 0, len, this.pos);
        if (this.closed) return;
        if (bytesRead === 0) {
          throw new XenoError('SAVE_FORMAT', `${this.file} is truncated: ${this.readBytes} of ${this.info.payloadLength} payload bytes could be read`);
        }
        const chunk = bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
        this.hash.update(chunk);
        this.pos += bytesRead;
        this.readBytes += bytesRead;
        this.onRead?.(this.readBytes);
        if (reused) continue;
        this.queue.push(chunk);
        this.queued += bytesRead;
        this.wake('consumer');
      }
    } catch (e) {
      this.error = e;
    } finally {
      this.eof = true;
      this.wake('consumer');
    }
  }

  private wake(who: 'reader' | 'consumer'): void {
    const f = who === 'reader' ? this.wakeReader : this.wakeConsumer;
    if (who === 'reader') this.wakeReader = undefined;
    else this.wakeConsumer = undefined;
    f?.();
  }

  /** The next chunk, or null at the end of the payload. */
  async next(): Promise<Buffer | null> {
    for (;;) {
      const c = this.queue.shift();
      if (c) {
        this.queued -= c.length;
        this.wake('reader');
        return c;
      }
      if (this.error) throw this.error;
      if (this.eof || this.closed) return null;
      await new Promise<void>((r) => (this.wakeConsumer = r));
    }
  }

  /** Once every chunk has been taken: check the trailer against the hash. */
  async verify(): Promise<string> {
    await this.loop;
    if (this.error) throw this.error;
    if (this.readBytes !== this.info.payloadLength) {
      throw new XenoError('SAVE_FORMAT', `${this.file} is truncated: ${this.readBytes} of ${this.info.payloadLength} payload bytes could be read`);
    }
    const trailer = decodeTrailer(await readAt(this.fh, this.end, TRAILER_LEN), this.file);
    const digest = this.hash.digest();
    if (trailer.payloadLength !== this.info.payloadLength || !digest.equals(trailer.sha256)) {
      throw new XenoError('SAVE_FORMAT', `${this.file} is corrupted: its SHA-256 checksum does not match the trailer`, {
        expected: trailer.sha256.toString('hex'),
        actual: digest.toString('hex'),
      });
    }
    return digest.toString('hex');
  }

  /** Stop reading and close the file (idempotent). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.queue.length = 0;
    this.wake('reader');
    this.wake('consumer');
    await this.loop.catch(() => undefined);
    await this.fh.close().catch(() => undefined);
  }
}

/**
 * Open a checked save file for QEMU to read its payload from (`migrate-incoming fd:`): the file
 * position is left at the payload's first byte, once the header read through this very
 * descriptor has been found to be the one openSaveFile() checked. The caller closes the fd.
 */
export function openPayloadFd(info: SaveFileInfo): { fd: number; dev: number; ino: number } {
  let fd: number;
  try {
    fd = openSync(info.path, 'r');
  } catch (e) {
    throw new XenoError('HOST_ERROR', `cannot read ${info.path}: ${errorMessage(e)}`);
  }
  try {
    const st = fstatSync(fd);
    const head = Buffer.alloc(info.payloadOffset);
    let got = 0;
    while (got < head.length) {
      const n = readSync(fd, head, got, head.length - got, null); // null: from the file position, advancing it
      if (n === 0) break;
      got += n;
    }
    if (st.size !== info.fileSize || got !== head.length || !head.equals(info.headerRaw)) {
      throw new XenoError('SAVE_FORMAT', `${info.path} changed since it was checked`);
    }
    return { fd, dev: st.dev, ino: st.ino };
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

/** Start reading and hashing the payload now, to be streamed later by streamPayload(). */
export function preparePayload(file: string, info: SaveFileInfo, opts: PrepareOptions = {}): Promise<PreparedPayload> {
  return PreparedPayload.start(file, info, opts);
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
  const src = opts.prepared ?? (await preparePayload(file, info));
  const total = info.payloadLength;
  let bytes = 0;
  // Keep an error listener for the whole transfer: a peer closing (EPIPE) must not crash xenod.
  let sinkError: Error | undefined;
  let acked = 0;
  const onSinkError = (e: Error) => (sinkError ??= e);
  sink.on('error', onSinkError);
  try {
    try {
      for (let chunk = await src.next(); chunk; chunk = await src.next()) {
        if (sinkError) throw sinkError;
        const n = chunk.length;
        const more = sink.write(chunk, (err) => {
          if (!err) acked += n;
        });
        bytes += n;
        onProgress?.({ bytes, done: bytes, total });
        if (!more && sink.writableLength > 8 * 1024 * 1024) await drained(sink);
      }
      await finishSink(sink, opts.end ?? true, () => acked === bytes);
    } catch (e) {
      if (isXenoError(e)) throw e;
      throw new XenoError('HOST_ERROR', `streaming ${src.file} failed after ${bytes} of ${total} bytes: ${errorMessage(e)}`);
    }
    const sha256 = await src.verify();
    return { bytes, sha256 };
  } finally {
    sink.off('error', onSinkError);
    await src.close();
  }
}
