/**
 * Just enough HTTP/1.1 to talk to xenod over its Unix socket: one request per connection
 * (`Connection: close`), bodies by Content-Length, chunked encoding or close, and upgrades.
 * Node's own http client is not used because loading it is a good part of a short command's cost
 * (`xeno list` should cost little more than Node's start-up); the peer is always our own daemon.
 */
import net from 'node:net';

export interface WireHead {
  status: number;
  headers: Record<string, string>;
}

export interface WireRequest {
  method: string;
  path: string;
  body?: string;
  headers?: Record<string, string>;
  /** Called with each piece of the body as it arrives (streams such as NDJSON progress). */
  onBody?: (chunk: Buffer, head: WireHead) => void;
}

export class WireError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Incremental decoder of a chunked body. */
class ChunkedDecoder {
  private buf = Buffer.alloc(0);
  done = false;

  push(data: Buffer, emit: (b: Buffer) => void): void {
    this.buf = Buffer.concat([this.buf, data]);
    for (;;) {
      const eol = this.buf.indexOf('\r\n');
      if (eol < 0) return;
      const size = parseInt(this.buf.subarray(0, eol).toString('latin1'), 16);
      if (Number.isNaN(size)) throw new WireError('BAD_RESPONSE', 'xenod sent a malformed chunked body');
      if (size === 0) {
        this.done = true;
        return;
      }
      if (this.buf.length < eol + 2 + size + 2) return;
      emit(this.buf.subarray(eol + 2, eol + 2 + size));
      this.buf = this.buf.subarray(eol + 2 + size + 2);
    }
  }
}

function parseHead(text: string): WireHead {
  const lines = text.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
  if (!m) throw new WireError('BAD_RESPONSE', `xenod sent a malformed status line: ${JSON.stringify(lines[0])}`);
  const headers: Record<string, string> = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  return { status: Number(m[1]), headers };
}

function requestText(req: WireRequest, extra: Record<string, string>): string {
  const headers: Record<string, string> = { host: 'xenod', ...extra, ...req.headers };
  if (req.body !== undefined) {
    headers['content-type'] ??= 'application/json';
    headers['content-length'] = String(Buffer.byteLength(req.body));
  }
  const head = [`${req.method} ${req.path} HTTP/1.1`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)].join('\r\n');
  return `${head}\r\n\r\n${req.body ?? ''}`;
}

function connect(socketPath: string): net.Socket {
  return net.createConnection(socketPath);
}

/** One request; resolves with the head and the whole body once the response is complete. */
export function exchange(socketPath: string, req: WireRequest, timeoutMs = 0): Promise<WireHead & { body: Buffer }> {
  return new Promise((resolve, reject) => {
    const sock = connect(socketPath);
    let raw = Buffer.alloc(0);
    let head: WireHead | undefined;
    const parts: Buffer[] = [];
    let received = 0;
    let chunked: ChunkedDecoder | undefined;
    let length = -1;
    let settled = false;
    const finish = (e?: Error) => {
      if (settled) return;
      settled = true;
      sock.destroy();
      if (e) reject(e);
      else resolve({ ...head!, body: Buffer.concat(parts) });
    };
    const body = (b: Buffer) => {
      parts.push(b);
      received += b.length;
      req.onBody?.(b, head!);
    };
    const onBodyData = (d: Buffer) => {
      if (chunked) {
        chunked.push(d, body);
        if (chunked.done) finish();
      } else {
        body(d);
        if (length >= 0 && received >= length) finish();
      }
    };
    if (timeoutMs) sock.setTimeout(timeoutMs, () => finish(new WireError('TIMEOUT', `no answer from xenod within ${timeoutMs} ms`)));
    sock.on('connect', () => sock.write(requestText(req, { connection: 'close' })));
    sock.on('data', (d: Buffer) => {
      try {
        if (head) return onBodyData(d);
        raw = Buffer.concat([raw, d]);
        const end = raw.indexOf('\r\n\r\n');
        if (end < 0) return;
        head = parseHead(raw.subarray(0, end).toString('latin1'));
        if (/chunked/i.test(head.headers['transfer-encoding'] ?? '')) chunked = new ChunkedDecoder();
        else if (head.headers['content-length'] !== undefined) length = Number(head.headers['content-length']);
        const rest = raw.subarray(end + 4);
        if (rest.length) onBodyData(rest);
        else if (length === 0) finish();
      } catch (e) {
        finish(e as Error);
      }
    });
    sock.on('error', (e: NodeJS.ErrnoException) => finish(connectError(e, socketPath)));
    sock.on('close', () => {
      if (head && !chunked && length < 0) finish();
      else finish(new WireError('CLOSED', 'xenod closed the connection before its answer was complete'));
    });
  });
}

/** An upgraded connection (consoles): resolves with the raw socket after `101`, or rejects with the error answer. */
export function upgrade(socketPath: string, path: string, protocol: string): Promise<{ socket: net.Socket } | (WireHead & { body: Buffer; socket?: undefined })> {
  return new Promise((resolve, reject) => {
    const sock = connect(socketPath);
    let raw = Buffer.alloc(0);
    let head: WireHead | undefined;
    sock.on('connect', () => sock.write(requestText({ method: 'GET', path }, { connection: 'Upgrade', upgrade: protocol })));
    const onData = (d: Buffer) => {
      raw = Buffer.concat([raw, d]);
      if (!head) {
        const end = raw.indexOf('\r\n\r\n');
        if (end < 0) return;
        try {
          head = parseHead(raw.subarray(0, end).toString('latin1'));
        } catch (e) {
          sock.destroy();
          reject(e as Error);
          return;
        }
        raw = raw.subarray(end + 4);
        if (head.status === 101) {
          // Hold what follows the 101 (a console's history often comes in the same chunk) until the
          // caller listens: a flowing socket with no 'data' listener would drop it.
          sock.off('data', onData);
          sock.pause();
          if (raw.length) sock.unshift(raw);
          const resumeOnListen = (event: string | symbol) => {
            if (event !== 'data') return;
            sock.off('newListener', resumeOnListen);
            process.nextTick(() => sock.resume());
          };
          sock.on('newListener', resumeOnListen);
          resolve({ socket: sock });
          return;
        }
      }
    };
    sock.on('data', onData);
    sock.on('error', (e: NodeJS.ErrnoException) => reject(connectError(e, socketPath)));
    sock.on('close', () => {
      if (head && head.status !== 101) resolve({ ...head, body: raw });
      else if (!head) reject(new WireError('CLOSED', 'xenod closed the connection'));
    });
  });
}

function connectError(e: NodeJS.ErrnoException, socketPath: string): Error {
  if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') {
    return new WireError(
      'NO_DAEMON',
      `cannot reach xenod at ${socketPath} (${e.code}): is it running? Start it with \`xenod\` (or \`npx xenod\` from a checkout), or point XENO_SOCKET at its socket`,
    );
  }
  return e;
}
