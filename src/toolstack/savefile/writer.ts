/**
 * Writes a save file durably: FILE.partial is created exclusively, the header goes first, the
 * payload is hashed as it is written, then the trailer; the file and its directory are fsynced and
 * FILE.partial is renamed to FILE. Any failure removes FILE.partial, so a file named FILE is always
 * complete.
 */
import { createHash, type Hash } from 'node:crypto';
import { closeSync, constants, fsyncSync, openSync, renameSync, writeSync } from 'node:fs';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { XenoError, errorMessage, isXenoError } from '../../common/errors.js';
import { encodeHeader, encodeTrailer, type SaveHeader } from './format.js';

export interface SaveWriterResult {
  file: string;
  /** Whole file, header and trailer included. */
  size: number;
  payloadBytes: number;
  sha256: string;
}

export interface SaveWriterOptions {
  /** Called after each write with the payload bytes written so far. */
  onBytes?: (payloadBytes: number) => void;
  /** File mode of the new file (default 0600: a save holds the guest's whole memory). */
  mode?: number;
  /**
   * Start writing back to disk every this many bytes, while more arrives (default 16 MiB; 0 = only
   * at the end): the final fsync then has little left to do.
   */
  flushEvery?: number;
}

/** The path a save is written to before it is complete. */
export function partialPathFor(file: string): string {
  return `${file}.partial`;
}

export class SaveWriter {
  private readonly hash: Hash = createHash('sha256');
  private payload = 0;
  private headerLen = 0;
  private state: 'open' | 'finished' | 'aborted' = 'open';
  private sink?: Writable;
  private flushing?: Promise<void>;
  private flushError?: unknown;
  private flushedAt = 0;

  private constructor(
    readonly file: string,
    readonly partial: string,
    private readonly fh: FileHandle,
    private readonly opts: SaveWriterOptions,
  ) {}

  /**
   * Create FILE.partial (refusing an existing one) and write the header. Fails before anything is
   * touched when the destination directory is missing or not writable.
   */
  static async open(file: string, header: SaveHeader, opts: SaveWriterOptions = {}): Promise<SaveWriter> {
    const abs = path.resolve(file);
    const partial = partialPathFor(abs);
    let fh: FileHandle;
    try {
      fh = await open(partial, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, opts.mode ?? 0o600);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') {
        throw new XenoError('BUSY', `${partial} already exists: another save to ${abs} is running, or one was interrupted (remove the file if not)`);
      }
      if (code === 'ENOENT') throw new XenoError('NO_SUCH_FILE', `cannot write ${abs}: directory ${path.dirname(abs)} does not exist`);
      throw new XenoError('HOST_ERROR', `cannot write ${abs}: ${errorMessage(e)}`);
    }
    const w = new SaveWriter(abs, partial, fh, opts);
    try {
      const h = encodeHeader(header);
      await w.writeAll([h]);
      w.hash.update(h);
      w.headerLen = h.length;
    } catch (e) {
      await w.abort();
      throw w.wrap(e);
    }
    return w;
  }

  get payloadBytes(): number {
    return this.payload;
  }

  /** A Writable taking the payload (the QEMU migration stream). */
  writable(): Writable {
    if (this.sink) return this.sink;
    this.sink = new Writable({
      highWaterMark: 4 * 1024 * 1024,
      writev: (chunks, cb) => {
        const bufs = chunks.map((c) => c.chunk as Buffer);
        this.writePayload(bufs).then(() => cb(), (e: unknown) => cb(e as Error));
      },
      write: (chunk: Buffer, _enc, cb) => {
        this.writePayload([chunk]).then(() => cb(), (e: unknown) => cb(e as Error));
      },
    });
    return this.sink;
  }

  /** Pipe a stream in as the payload; on failure the partial file is removed. */
  async consume(src: Readable): Promise<void> {
    try {
      await pipeline(src, this.writable());
    } catch (e) {
      await this.abort();
      throw this.wrap(e);
    }
  }

  /**
   * Write one chunk synchronously (for a worker thread reading its socket into one reused buffer:
   * the bytes must be on their way to the file before the buffer is refilled). Throws like writes do.
   */
  writeChunkSync(chunk: Buffer): void {
    if (this.state !== 'open') throw new XenoError('INTERNAL', `save to ${this.file} is already ${this.state}`);
    if (this.flushError) throw this.wrap(this.flushError);
    let off = 0;
    try {
      while (off < chunk.length) {
        const n = writeSync(this.fh.fd, chunk, off, chunk.length - off);
        if (n <= 0) throw Object.assign(new Error('no space left on device (short write)'), { code: 'ENOSPC' });
        off += n;
      }
    } catch (e) {
      throw this.wrap(e);
    }
    this.hash.update(chunk);
    this.payload += chunk.length;
    this.opts.onBytes?.(this.payload);
    this.maybeFlush();
  }

  private async writePayload(bufs: Buffer[]): Promise<void> {
    if (this.state !== 'open') throw new XenoError('INTERNAL', `save to ${this.file} is already ${this.state}`);
    await this.writeAll(bufs);
    for (const b of bufs) this.hash.update(b);
    for (const b of bufs) this.payload += b.length;
    this.opts.onBytes?.(this.payload);
    this.maybeFlush();
    if (this.flushError) throw this.flushError;
  }

  /** Start writing back what is written so far, in the background, every flushEvery bytes. */
  private maybeFlush(): void {
    const every = this.opts.flushEvery ?? 16 * 1024 * 1024;
    if (every > 0 && !this.flushing && this.payload - this.flushedAt >= every) {
      this.flushedAt = this.payload;
      this.flushing = this.fh.datasync().then(
        () => void (this.flushing = undefined),
        (e: unknown) => {
          this.flushError = e;
          this.flushing = undefined;
        },
      );
    }
  }

  /** The payload has ended (a caller that used writeChunkSync): the next step is finish(). */
  get isOpen(): boolean {
    return this.state === 'open';
  }

  private async writeAll(bufs: Buffer[]): Promise<void> {
    const want = bufs.reduce((s, b) => s + b.length, 0);
    let done = 0;
    let rest = bufs;
    // A short write means the device filled up; retrying gets the real error (ENOSPC).
    while (done < want) {
      const { bytesWritten } = await this.fh.writev(rest);
      if (bytesWritten <= 0) throw Object.assign(new Error('no space left on device (short write)'), { code: 'ENOSPC' });
      done += bytesWritten;
      rest = skip(rest, bytesWritten);
    }
  }

  /** Write the trailer, fsync the file and its directory, rename FILE.partial to FILE. */
  async finish(): Promise<SaveWriterResult> {
    if (this.state !== 'open') throw new XenoError('INTERNAL', `save to ${this.file} is already ${this.state}`);
    try {
      if (this.sink && !this.sink.writableFinished) {
        await new Promise<void>((resolve, reject) => {
          this.sink!.end(() => resolve());
          this.sink!.once('error', reject);
        });
      }
      await this.flushing;
      if (this.flushError) throw this.flushError;
      const digest = this.hash.digest();
      const trailer = encodeTrailer(this.payload, digest);
      await this.writeAll([trailer]);
      await this.fh.sync();
      await this.fh.close();
      this.state = 'finished';
      await rename(this.partial, this.file);
      await syncDir(path.dirname(this.file));
      return { file: this.file, size: this.headerLen + this.payload + trailer.length, payloadBytes: this.payload, sha256: digest.toString('hex') };
    } catch (e) {
      this.state = 'open';
      await this.abort();
      throw this.wrap(e);
    }
  }

  /** Give up: close and remove FILE.partial. Safe to call more than once. */
  async abort(): Promise<void> {
    if (this.state === 'aborted') return;
    const wasOpen = this.state === 'open';
    this.state = 'aborted';
    this.sink?.destroy();
    await this.flushing;
    if (wasOpen) await this.fh.close().catch(() => undefined);
    await rm(this.partial, { force: true }).catch(() => undefined);
  }

  private wrap(e: unknown): XenoError {
    if (isXenoError(e)) return e;
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOSPC' ? 'no space left on device' : code === 'EDQUOT' ? 'disk quota exceeded' : errorMessage(e);
    return new XenoError('HOST_ERROR', `cannot write ${this.file}: ${why}`, { file: this.file, errno: code });
  }
}

function skip(bufs: Buffer[], n: number): Buffer[] {
  const out: Buffer[] = [];
  for (const b of bufs) {
    if (n >= b.length) {
      n -= b.length;
      continue;
    }
    out.push(n > 0 ? b.subarray(n) : b);
    n = 0;
  }
  return out;
}

export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** A small file written whole or not at all (tmp + fsync + rename): records and intents. */
export function writeDurable(file: string, text: string): void {
  const tmp = `${file}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
}
