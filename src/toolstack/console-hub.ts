/**
 * A guest's serial line, held by the daemon: one connection to QEMU's serial socket, fanned out to
 * any number of clients, and kept in a bounded log file (xend's console-limit). Reconnects when
 * QEMU drops it, and is re-opened by a restarted daemon.
 */
import { appendFileSync, closeSync, openSync, readFileSync, readSync, statSync, writeFileSync, fstatSync } from 'node:fs';
import net from 'node:net';
import { EventEmitter } from 'node:events';

export interface ConsoleSink {
  write(data: Buffer): void;
}

export class ConsoleHub extends EventEmitter {
  private socket?: net.Socket;
  private readonly clients = new Set<ConsoleSink>();
  private closed = false;
  private logSize = 0;

  constructor(
    private readonly serialPath: string,
    private readonly logFile: string,
    private readonly limitBytes: number,
  ) {
    super();
    try {
      this.logSize = statSync(logFile).size;
    } catch {
      this.logSize = 0;
    }
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
    this.appendLog(d);
    for (const c of this.clients) c.write(d);
    this.emit('data', d);
  }

  private appendLog(d: Buffer): void {
    appendFileSync(this.logFile, d);
    this.logSize += d.length;
    if (this.logSize > this.limitBytes) {
      // Keep the newest half: one rewrite per limit/2 bytes of output.
      const keep = Math.floor(this.limitBytes / 2);
      const tail = readTail(this.logFile, keep);
      writeFileSync(this.logFile, tail);
      this.logSize = tail.length;
    }
  }

  /** Input from a client, typed on the guest's serial line. */
  input(d: Buffer): void {
    this.socket?.write(d);
  }

  attach(sink: ConsoleSink): () => void {
    this.clients.add(sink);
    return () => this.clients.delete(sink);
  }

  history(): Buffer {
    try {
      return readFileSync(this.logFile);
    } catch {
      return Buffer.alloc(0);
    }
  }

  get connected(): boolean {
    return this.socket !== undefined;
  }

  close(): void {
    this.closed = true;
    this.socket?.destroy();
    this.emit('close');
    this.clients.clear();
  }
}

function readTail(file: string, bytes: number): Buffer {
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    const len = Math.min(bytes, size);
    const buf = Buffer.alloc(len);
    readSync(fd, buf, 0, len, size - len);
    return buf;
  } finally {
    closeSync(fd);
  }
}
