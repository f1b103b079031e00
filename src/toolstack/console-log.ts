/**
 * A guest's console log file, written asynchronously and bounded twice: in memory (at most
 * `maxPending` bytes queued for the disk; beyond that, output is dropped and counted) and on disk
 * (console-limit: past it, the newest half is kept). A write that fails (a full disk...) costs the
 * lines it carried, never the daemon: the loss is reported once, and once more when writing works
 * again.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { errorMessage } from '../common/errors.js';

export type ConsoleLogReport = (message: string) => void;

export class ConsoleLog {
  private fh?: FileHandle;
  private opening?: Promise<FileHandle | undefined>;
  private queue: Buffer[] = [];
  private queued = 0;
  private writing = false;
  private size = -1;
  private lost = 0;
  private failing = false;
  private closed = false;
  private idle: Array<() => void> = [];

  constructor(
    readonly file: string,
    private readonly limitBytes: number,
    private readonly report: ConsoleLogReport = () => undefined,
    private readonly maxPending = 1024 * 1024,
  ) {}

  /** Queue output for the file; never blocks and never throws. */
  append(d: Buffer): void {
    if (this.closed) return;
    if (this.queued + d.length > this.maxPending) {
      this.lose(d.length, 'the disk does not keep up');
      return;
    }
    this.queue.push(d);
    this.queued += d.length;
    if (!this.writing) void this.drain();
  }

  /** Bytes of output lost since the log was opened. */
  get lostBytes(): number {
    return this.lost;
  }

  /** Resolves once everything queued so far was written (or lost). */
  flushed(): Promise<void> {
    if (!this.writing && !this.queue.length) return Promise.resolve();
    return new Promise((r) => this.idle.push(r));
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.flushed();
    await this.fh?.close().catch(() => undefined);
    this.fh = undefined;
  }

  private lose(bytes: number, why: string): void {
    this.lost += bytes;
    if (!this.failing) {
      this.failing = true;
      this.report(`console log ${this.file}: output is being lost (${why}); the guest and its console clients are not affected`);
    }
  }

  private async handle(): Promise<FileHandle | undefined> {
    if (this.fh) return this.fh;
    this.opening ??= open(this.file, 'a+', 0o600).then(
      async (fh) => {
        this.size = (await fh.stat()).size;
        this.fh = fh;
        return fh;
      },
      () => undefined,
    ).finally(() => (this.opening = undefined));
    return this.opening;
  }

  private async drain(): Promise<void> {
    this.writing = true;
    try {
      while (this.queue.length) {
        const chunk = this.queue.length === 1 ? this.queue[0]! : Buffer.concat(this.queue);
        this.queue = [];
        this.queued = 0;
        try {
          const fh = await this.handle();
          if (!fh) throw new Error(`cannot open ${this.file}`);
          await writeAll(fh, chunk);
          this.size += chunk.length;
          if (this.size > this.limitBytes) await this.trim(fh);
          if (this.failing) {
            this.failing = false;
            this.report(`console log ${this.file}: writing again (${this.lost} bytes of output lost so far)`);
          }
        } catch (e) {
          this.lose(chunk.length, errorMessage(e));
        }
      }
    } finally {
      this.writing = false;
      for (const r of this.idle.splice(0)) r();
    }
  }

  /** Keep the newest half: one rewrite per limit/2 bytes of output. */
  private async trim(fh: FileHandle): Promise<void> {
    const keep = Math.min(Math.floor(this.limitBytes / 2), this.size);
    const tail = Buffer.alloc(keep);
    const { bytesRead } = await fh.read(tail, 0, keep, Math.max(0, this.size - keep));
    await fh.truncate(0);
    this.size = 0;
    await writeAll(fh, tail.subarray(0, bytesRead));
    this.size = bytesRead;
  }
}

async function writeAll(fh: FileHandle, b: Buffer): Promise<void> {
  let off = 0;
  while (off < b.length) {
    const { bytesWritten } = await fh.write(b, off, b.length - off);
    off += bytesWritten;
  }
}
