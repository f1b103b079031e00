/**
 * A small QMP client (QEMU Machine Protocol) over a Unix socket.
 * QEMU's answers are treated as untrusted input: each line is parsed on its own, replies are matched
 * to requests by id, and anything unexpected is dropped rather than trusted.
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { XenoError } from '../../common/errors.js';

export interface QmpEvent {
  event: string;
  data: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  command: string;
}

export class QmpClient extends EventEmitter {
  private buffer = '';
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private closed = false;
  version?: { qemu: { major: number; minor: number; micro: number } };

  private constructor(private readonly socket: net.Socket) {
    super();
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', () => this.onClose());
    socket.on('close', () => this.onClose());
  }

  /** Connect, read the greeting and leave capabilities negotiation done. Retries until timeoutMs. */
  static async connect(path: string, timeoutMs = 10_000): Promise<QmpClient> {
    const deadline = Date.now() + timeoutMs;
    let lastError: unknown;
    while (Date.now() < deadline) {
      try {
        const socket = await openSocket(path, Math.max(100, deadline - Date.now()));
        const client = new QmpClient(socket);
        const greeting = (await client.waitGreeting(Math.max(100, deadline - Date.now()))) as {
          QMP?: { version?: QmpClient['version'] };
        };
        client.version = greeting.QMP?.version;
        await client.execute('qmp_capabilities');
        return client;
      } catch (e) {
        lastError = e;
        await new Promise((r) => setTimeout(r, 3)); // QEMU creates the socket within ms of starting
      }
    }
    throw new XenoError('TIMEOUT', `QMP socket ${path} did not answer: ${String(lastError)}`);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  private greetingWaiter?: (v: unknown) => void;

  private waitGreeting(timeoutMs: number): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.close();
        reject(new Error('no QMP greeting'));
      }, timeoutMs);
      this.greetingWaiter = (v) => {
        clearTimeout(timer);
        resolve(v);
      };
      this.once('close', () => {
        clearTimeout(timer);
        reject(new Error('QMP socket closed before greeting'));
      });
    });
  }

  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = 30_000): Promise<T> {
    if (this.closed) return Promise.reject(new XenoError('QEMU_ERROR', `QMP connection closed (${command})`));
    const id = `xeno-${this.nextId++}`;
    const msg: Record<string, unknown> = { execute: command, id };
    if (args) msg.arguments = args;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new XenoError('TIMEOUT', `QMP command ${command} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        command,
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.socket.write(JSON.stringify(msg) + '\n');
    });
  }

  /** Resolve with the first event named `name` (optionally matching `pred`), or reject on timeout/close. */
  waitEvent(name: string, timeoutMs: number, pred: (e: QmpEvent) => boolean = () => true): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      const onEvent = (e: QmpEvent) => {
        if (e.event === name && pred(e)) {
          cleanup();
          resolve(e);
        }
      };
      const onClose = () => {
        cleanup();
        reject(new XenoError('QEMU_ERROR', `QEMU went away while waiting for ${name}`));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new XenoError('TIMEOUT', `no ${name} event within ${timeoutMs} ms`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.off('event', onEvent);
        this.off('close', onClose);
      };
      this.on('event', onEvent);
      this.once('close', onClose);
    });
  }

  close(): void {
    this.socket.destroy();
    this.onClose();
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (line) this.onLine(line);
    }
    if (this.buffer.length > 16 * 1024 * 1024) this.close(); // a runaway peer
  }

  private onLine(line: string): void {
    let msg: unknown;
    try {
      msg = JSON.parse(line);
    } catch {
      return;
    }
    if (typeof msg !== 'object' || msg === null) return;
    const m = msg as Record<string, unknown>;
    if ('QMP' in m) {
      this.greetingWaiter?.(m);
      this.greetingWaiter = undefined;
      return;
    }
    if (typeof m.event === 'string') {
      const data = typeof m.data === 'object' && m.data !== null ? (m.data as Record<string, unknown>) : {};
      this.emit('event', { event: m.event, data, timestamp: m.timestamp } as QmpEvent);
      return;
    }
    const id = typeof m.id === 'string' ? m.id : undefined;
    const p = id ? this.pending.get(id) : undefined;
    if (!p || !id) return;
    this.pending.delete(id);
    if ('error' in m) {
      const err = m.error as { class?: string; desc?: string } | undefined;
      p.reject(new XenoError('QEMU_ERROR', `QEMU refused ${p.command}: ${err?.desc ?? 'unknown error'}`));
    } else {
      p.resolve(m.return);
    }
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    for (const [, p] of this.pending) p.reject(new XenoError('QEMU_ERROR', `QEMU closed QMP during ${p.command}`));
    this.pending.clear();
    this.emit('close');
  }
}

function openSocket(path: string, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.createConnection(path);
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('connect timeout'));
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      resolve(s);
    });
    s.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}
