/**
 * The daemon's logger: pino, to stderr and to its log file at once. The file is rotated by size
 * (xeno-log-size; xenod.log.1 ... xenod.log.N with N = xeno-log-count), and a write that fails (a
 * full disk...) costs that line only: the loss is said once on stderr, and again when writing works.
 */
import { closeSync, mkdirSync, openSync, renameSync, rmSync, fstatSync, writeSync } from 'node:fs';
import path from 'node:path';
import pino, { type Logger } from 'pino';

export interface LogRotation {
  /** Bytes after which the file is rotated (0 = never). */
  maxBytes: number;
  /** Rotated files kept beside the live one (xenod.log.1 is the newest). */
  keep: number;
}

const NO_ROTATION: LogRotation = { maxBytes: 0, keep: 0 };

/** A synchronous, never-throwing, size-rotated log file (one line per write). */
export class RotatingLogFile {
  private fd = -1;
  private size = 0;
  private lost = 0;
  private failing = false;

  constructor(
    readonly file: string,
    private readonly rotation: LogRotation = NO_ROTATION,
    private readonly complain: (msg: string) => void = (m) => writeStderr(m),
  ) {
    mkdirSync(path.dirname(file), { recursive: true });
    this.open();
  }

  /** Lines lost to failed writes so far. */
  get lostLines(): number {
    return this.lost;
  }

  write(line: string): void {
    const buf = Buffer.from(line);
    try {
      if (this.fd < 0) this.open();
      if (this.rotation.maxBytes > 0 && this.size > 0 && this.size + buf.length > this.rotation.maxBytes) this.rotate();
      let off = 0;
      while (off < buf.length) off += writeSync(this.fd, buf, off, buf.length - off);
      this.size += buf.length;
      if (this.failing) {
        // Said in the file too, once it can be: a reader of xenod.log sees where the gap is.
        this.failing = false;
        const note = `xenod: ${this.lost} log lines were lost (${this.file} could not be written); writing again`;
        this.complain(`${note}\n`);
        this.write(`${JSON.stringify({ level: 40, time: new Date().toISOString(), msg: note })}\n`);
      }
    } catch (e) {
      this.lost++;
      if (!this.failing) {
        this.failing = true;
        this.complain(`xenod: cannot write ${this.file} (${(e as Error).message}): log lines are being lost; xenod goes on\n`);
      }
    }
  }

  flush(): void {}

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }

  private open(): void {
    this.fd = openSync(this.file, 'a', 0o600);
    this.size = fstatSync(this.fd).size;
  }

  /** xenod.log -> .1 -> .2 ...; the oldest beyond `keep` goes. */
  private rotate(): void {
    this.close();
    const { keep } = this.rotation;
    rmSync(`${this.file}.${keep}`, { force: true });
    for (let i = keep - 1; i >= 1; i--) {
      try {
        renameSync(`${this.file}.${i}`, `${this.file}.${i + 1}`);
      } catch {
        /* not there yet */
      }
    }
    if (keep > 0) renameSync(this.file, `${this.file}.1`);
    else rmSync(this.file, { force: true });
    this.open();
  }
}

function writeStderr(msg: string): void {
  try {
    writeSync(2, msg);
  } catch {
    /* stderr gone: nothing better to do */
  }
}

/** stderr as a pino stream that never throws. */
const stderrStream = { write: (line: string) => writeStderr(line) };

export function createLogger(level: string, logFile: string, rotation: LogRotation = NO_ROTATION): Logger {
  const file = new RotatingLogFile(logFile, rotation);
  const streams = pino.multistream([
    { stream: stderrStream, level: level as pino.Level },
    { stream: file, level: level as pino.Level },
  ]);
  return pino({ level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime }, streams);
}
