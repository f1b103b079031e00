/**
 * The daemon's side of io-worker.ts: a small pool of worker threads, and the two jobs they run.
 *  - SaveSink: FILE.partial opened and a Unix socket listened on, in the worker; QEMU's stream is
 *    written, hashed, then finished (trailer, fsync, rename) or aborted (partial file removed).
 *  - RestoreSource: the file read and hashed ahead in the worker (started while QEMU starts), then
 *    streamed into QEMU's socket, or only hashed while QEMU reads the file itself, and checked
 *    against the trailer.
 * One idle worker is kept ready, so a save or restore does not wait for a thread to start.
 */
import { rmSync } from 'node:fs';
import { partialPathFor } from './writer.js';
import { Worker } from 'node:worker_threads';
import { ERROR_CATALOGUE, XenoError, type ErrorCode } from '../../common/errors.js';
import type { ProgressFn, SaveFileInfo, SaveHeader } from './format.js';
import type { FromWorker, ToWorker, WireError } from './io-worker.js';
import type { SaveWriterResult } from './writer.js';

function toError(w: WireError): Error {
  if (w.code && w.code in ERROR_CATALOGUE) return new XenoError(w.code as ErrorCode, w.message, w.details);
  return Object.assign(new Error(w.message), w.details?.errno ? { code: w.details.errno } : {});
}

class IoWorker {
  private readonly w: Worker;
  private readonly listeners = new Set<(m: FromWorker) => void>();
  dead?: Error;

  constructor() {
    this.w = new Worker(new URL('./io-worker.js', import.meta.url));
    this.w.on('message', (m: FromWorker) => {
      for (const l of [...this.listeners]) l(m);
    });
    const die = (e: Error) => {
      this.dead ??= e;
      for (const l of [...this.listeners]) l({ ev: 'error', stage: 'worker', error: { code: 'INTERNAL', message: e.message } });
    };
    this.w.on('error', die);
    this.w.on('exit', (code) => die(new Error(`save/restore worker exited (${code})`)));
    this.w.unref();
  }

  send(m: ToWorker): void {
    if (this.dead) throw new XenoError('INTERNAL', this.dead.message);
    this.w.postMessage(m);
  }

  listen(l: (m: FromWorker) => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  /** Send `m` and wait for the event `ev`; an error reported for `m.op` (or the worker dying) rejects. */
  request<E extends FromWorker['ev']>(m: ToWorker, ev: E): Promise<Extract<FromWorker, { ev: E }>> {
    return new Promise((resolve, reject) => {
      const off = this.listen((r) => {
        if (r.ev === ev) {
          off();
          resolve(r as Extract<FromWorker, { ev: E }>);
        } else if (r.ev === 'error' && (r.stage === m.op || r.stage === 'worker')) {
          off();
          reject(toError(r.error));
        }
      });
      try {
        this.send(m);
      } catch (e) {
        off();
        reject(e as Error);
      }
    });
  }

  /** Keep the process alive while a job runs; an idle worker does not. */
  hold(on: boolean): void {
    if (on) this.w.ref();
    else this.w.unref();
  }

  terminate(): void {
    this.listeners.clear();
    void this.w.terminate();
  }
}

const idle: IoWorker[] = [];

function take(): IoWorker {
  const w = idle.pop() ?? new IoWorker();
  w.hold(true);
  // Keep one warm for the next job.
  if (!idle.length) idle.push(new IoWorker());
  return w;
}

/** Return a worker whose job ended cleanly; anything else is not reused. */
function give(w: IoWorker, clean: boolean): void {
  w.hold(false);
  if (clean && !w.dead && idle.length < 2) idle.push(w);
  else w.terminate();
}

/** Start the idle worker now (at daemon start), so the first save does not wait for it. */
export function prewarmIoWorker(): void {
  if (!idle.length) idle.push(new IoWorker());
}

export class SaveSink {
  /** Payload bytes written so far (updated every 50 ms). */
  bytes = 0;
  private copyError?: Error;
  private copied = false;
  private settledWaiters: Array<() => void> = [];
  private off: () => void;
  private done = false;

  private constructor(
    private readonly io: IoWorker,
    private readonly file: string,
    onBytes?: (bytes: number) => void,
  ) {
    this.off = io.listen((m) => {
      if (m.ev === 'bytes') {
        this.bytes = m.bytes;
        onBytes?.(m.bytes);
      } else if (m.ev === 'copied') {
        this.bytes = m.bytes;
        this.copied = true;
        this.settle();
      } else if (m.ev === 'error' && (m.stage === 'copy' || m.stage === 'worker')) {
        this.copyError ??= toError(m.error);
        this.settle();
      }
    });
  }

  /** FILE.partial created and written with the header, the socket listening (or a clear error). */
  static async open(file: string, header: SaveHeader, sockPath: string, onBytes?: (bytes: number) => void): Promise<SaveSink> {
    const io = take();
    const sink = new SaveSink(io, file, onBytes);
    try {
      await io.request({ op: 'save-open', file, header, sockPath }, 'listening');
    } catch (e) {
      sink.off();
      give(io, true); // the worker cleaned up after itself
      throw e;
    }
    return sink;
  }

  /** Set once the copy failed (QEMU's stream could not be written). */
  get error(): Error | undefined {
    return this.copyError;
  }

  private settle(): void {
    for (const w of this.settledWaiters.splice(0)) w();
  }

  /** Resolves once QEMU's stream has ended and every byte is written, or the copy failed. */
  settled(timeoutMs?: number): Promise<void> {
    if (this.copied || this.copyError) return Promise.resolve();
    return new Promise((resolve) => {
      this.settledWaiters.push(resolve);
      if (timeoutMs !== undefined) setTimeout(resolve, timeoutMs);
    });
  }

  get complete(): boolean {
    return this.copied;
  }

  /** Trailer, fsync, rename to FILE, fsync of the directory. */
  async finish(): Promise<SaveWriterResult> {
    try {
      const r = await this.io.request({ op: 'save-finish' }, 'finished');
      this.release(true);
      return r.result;
    } catch (e) {
      this.release(false);
      throw e;
    }
  }

  /** Remove FILE.partial and stop listening. */
  async abort(): Promise<void> {
    if (!this.done) {
      try {
        await this.io.request({ op: 'save-abort' }, 'aborted');
        this.release(true);
      } catch {
        this.release(false);
      }
    }
    // Whatever happened in the worker (it may have been stopped mid-job), no partial file survives.
    rmSync(partialPathFor(this.file), { force: true });
  }

  private release(clean: boolean): void {
    if (this.done) return;
    this.done = true;
    this.off();
    give(this.io, clean);
  }
}

export class RestoreSource {
  private done = false;

  private constructor(
    private readonly io: IoWorker,
    readonly file: string,
    readonly info: SaveFileInfo,
  ) {}

  /**
   * Open the file and start reading and hashing it ahead, in a worker. With `qemuReads`, QEMU
   * reads the payload from its own descriptor of this file (same dev and inode): the worker only
   * hashes, as fast as it can, and verify() checks the result.
   */
  static async prepare(file: string, info: SaveFileInfo, qemuReads?: { dev: number; ino: number }): Promise<RestoreSource> {
    const io = take();
    try {
      await io.request({ op: 'restore-prepare', file, info, hashOnly: qemuReads !== undefined, sameAs: qemuReads }, 'prepared');
    } catch (e) {
      give(io, false);
      throw e;
    }
    return new RestoreSource(io, file, info);
  }

  /** Connect to QEMU's socket and stream the payload in; resolves once the trailer checked out. */
  async stream(sockPath: string, onProgress?: ProgressFn): Promise<{ bytes: number; sha256: string }> {
    const off = this.io.listen((m) => {
      if (m.ev === 'progress') onProgress?.({ bytes: m.bytes, done: m.bytes, total: m.total });
    });
    try {
      const r = await this.io.request({ op: 'restore-stream', sockPath }, 'streamed');
      return { bytes: r.bytes, sha256: r.sha256 };
    } finally {
      off();
    }
  }

  /** The whole payload hashed (QEMU read it itself): resolves once the trailer checked out. */
  async verify(onProgress?: ProgressFn): Promise<{ bytes: number; sha256: string }> {
    const off = this.io.listen((m) => {
      if (m.ev === 'progress') onProgress?.({ bytes: m.bytes, done: m.bytes, total: m.total });
    });
    try {
      const r = await this.io.request({ op: 'restore-verify' }, 'streamed');
      return { bytes: r.bytes, sha256: r.sha256 };
    } finally {
      off();
    }
  }

  /** Stop reading, close the file, give the worker back (idempotent). */
  async close(): Promise<void> {
    if (this.done) return;
    this.done = true;
    try {
      await this.io.request({ op: 'restore-close' }, 'closed');
      give(this.io, true);
    } catch {
      give(this.io, false);
    }
  }
}
