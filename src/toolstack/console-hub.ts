/**
 * A guest's console, held by the daemon: one connection to QEMU's serial socket (and one to its
 * virtio console, hvc0, when given), merged and fanned out to any number of clients, and kept in
 * a bounded log file (xend's console-limit). Reconnects when QEMU drops it, and is re-opened by a
 * restarted daemon. Input goes to the console the guest's kernel was told to use (`inputTo`).
 */
import { appendFileSync, closeSync, openSync, readFileSync, readSync, statSync, writeFileSync, fstatSync } from 'node:fs';
import net from 'node:net';
import { EventEmitter } from 'node:events';

export interface ConsoleSink {
  write(data: Buffer): void;
}

/** Where typed input goes: the serial line, the virtio console, or both (guest unknown). */
export type ConsoleInput = 'serial' | 'hvc' | 'both';

export interface ConsoleHubOptions {
  /** QEMU's virtconsole socket: its output is merged into the same console. */
  hvcPath?: string;
  inputTo?: ConsoleInput;
}

/** The console a kernel command line makes /dev/console: its last console= (Linux's rule). */
export function consoleOfCmdline(cmdline: string | undefined): ConsoleInput {
  if (cmdline === undefined) return 'both';
  const all = [...cmdline.matchAll(/(?:^|\s)console=([A-Za-z]+)/g)].map((m) => m[1]!);
  return all.length && all[all.length - 1] === 'hvc' ? 'hvc' : 'serial';
}

export class ConsoleHub extends EventEmitter {
  private socket?: net.Socket;
  private hvc?: net.Socket;
  private readonly clients = new Set<ConsoleSink>();
  private closed = false;
  private logSize = 0;

  constructor(
    private readonly serialPath: string,
    private readonly logFile: string,
    private readonly limitBytes: number,
    private readonly opts: ConsoleHubOptions = {},
  ) {
    super();
    try {
      this.logSize = statSync(logFile).size;
    } catch {
      this.logSize = 0;
    }
    this.connect();
    if (opts.hvcPath) this.connect(0, 'hvc');
  }

  private connect(attempt = 0, which: 'serial' | 'hvc' = 'serial'): void {
    if (this.closed) return;
    const s = net.createConnection(which === 'hvc' ? this.opts.hvcPath! : this.serialPath);
    s.on('connect', () => {
      if (which === 'hvc') this.hvc = s;
      else {
        this.socket = s;
        this.emit('connected');
      }
    });
    s.on('data', (d: Buffer) => this.onOutput(d));
    s.on('error', () => undefined);
    s.on('close', () => {
      if (this.socket === s) this.socket = undefined;
      if (this.hvc === s) this.hvc = undefined;
      // QEMU keeps the server socket while it runs; retry briefly (start-up race, reset).
      if (!this.closed && attempt < 200) setTimeout(() => this.connect(attempt + 1, which), 25);
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

  /** Input from a client, typed on the console the guest uses (serial, hvc0 or both). */
  input(d: Buffer): void {
    const to = this.opts.hvcPath ? (this.opts.inputTo ?? 'serial') : 'serial';
    if (to !== 'hvc') this.socket?.write(d);
    if (to !== 'serial') this.hvc?.write(d);
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
    this.hvc?.destroy();
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
