/**
 * A guest's serial line, held by the daemon: one connection to QEMU's serial socket, fanned out to
 * any number of clients, and kept in a bounded log file (xend's console-limit; console-log.ts).
 * Reconnects when QEMU drops it, and is re-opened by a restarted daemon.
 *
 * The guest is never slowed down by its readers: QEMU's socket is always read, each client has a
 * bounded buffer (what its connection has not taken yet) and a client that lets it fill is dropped
 * with a message; the log is written asynchronously and a failing disk only costs log lines.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { EventEmitter } from 'node:events';
import { ConsoleLog, type ConsoleLogReport } from './console-log.js';

/** A client's connection: what it has not taken yet is `writableLength` bytes. */
export interface ConsoleSink {
  write(data: Buffer | string): void;
  readonly writableLength: number;
  /** Say goodbye and hang up (the data still queued may never be read). */
  drop(message: string): void;
}

/** Bytes a client may leave unread before it is dropped (a few seconds of a fast guest). */
export const CLIENT_BUFFER_BYTES = 1024 * 1024;

export interface ConsoleHubOptions {
  /** Where the hub says what went wrong with its log or its clients (xenod's log). */
  report?: ConsoleLogReport;
  clientBufferBytes?: number;
}

export class ConsoleHub extends EventEmitter {
  private socket?: net.Socket;
  /** Each client with the bytes it may leave unread. */
  private readonly clients = new Map<ConsoleSink, number>();
  private closed = false;
  private readonly log: ConsoleLog;
  private readonly report: ConsoleLogReport;
  private readonly clientBufferBytes: number;

  constructor(
    private readonly serialPath: string,
    private readonly logFile: string,
    limitBytes: number,
    opts: ConsoleHubOptions = {},
  ) {
    super();
    this.report = opts.report ?? (() => undefined);
    this.clientBufferBytes = opts.clientBufferBytes ?? CLIENT_BUFFER_BYTES;
    this.log = new ConsoleLog(logFile, limitBytes, this.report);
    this.connect();
  }

  private connect(attempt = 0): void {
    if (this.closed) return;
    const s = net.createConnection(this.serialPath);
    s.on('connect', () => {
      this.socket = s;
      this.emit('connected');
    });
    s.on('data', (d: Buffer) => this.onOutput(d));
    s.on('error', () => undefined);
    s.on('close', () => {
      if (this.socket === s) this.socket = undefined;
      // QEMU keeps the server socket while it runs; retry briefly (start-up race, reset).
      if (!this.closed && attempt < 200) setTimeout(() => this.connect(attempt + 1), 25);
    });
  }

  private onOutput(d: Buffer): void {
    this.log.append(d);
    for (const [c, allowed] of this.clients) {
      if (c.writableLength + d.length > allowed) {
        this.clients.delete(c);
        const msg = `console client dropped: it left more than ${Math.round(this.clientBufferBytes / 1024)} KiB of output unread`;
        this.report(`${msg} (${this.logFile})`);
        c.drop(`\r\n[xeno: ${msg}; reconnect to go on]\r\n`);
        continue;
      }
      c.write(d);
    }
    this.emit('data', d);
  }

  /** Input from a client, typed on the guest's serial line. */
  input(d: Buffer): void {
    this.socket?.write(d);
  }

  /** `backlog`: bytes already queued on the sink (the history it asked for), allowed on top. */
  attach(sink: ConsoleSink, backlog = 0): () => void {
    this.clients.set(sink, this.clientBufferBytes + backlog);
    return () => this.clients.delete(sink);
  }

  /** How many clients are attached now. */
  get clientCount(): number {
    return this.clients.size;
  }

  /** The log as written so far (bounded by console-limit). */
  history(): Buffer {
    try {
      return readFileSync(this.logFile);
    } catch {
      return Buffer.alloc(0);
    }
  }

  /** Resolves once the output received so far is in the log file (or counted as lost). */
  flushed(): Promise<void> {
    return this.log.flushed();
  }

  get lostBytes(): number {
    return this.log.lostBytes;
  }

  get connected(): boolean {
    return this.socket !== undefined;
  }

  close(): void {
    this.closed = true;
    this.socket?.destroy();
    this.emit('close');
    this.clients.clear();
    void this.log.close();
  }
}
