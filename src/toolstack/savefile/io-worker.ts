/**
 * Worker thread that moves a save's or a restore's bytes (socket <-> file, SHA-256) off xenod's
 * event loop. A save stream is tens to thousands of MiB arriving in 64 KiB socket reads; in the
 * daemon's isolate each read is an external allocation that drives full garbage collections of its
 * heap, and the hashing and file writes hold the loop that serves the API. Here they run in a small
 * isolate of their own. The protocol (one job at a time per worker) is driven by offload.ts.
 */
import { rmSync } from 'node:fs';
import net from 'node:net';
import { parentPort } from 'node:worker_threads';
import { XenoError, isXenoError } from '../../common/errors.js';
import type { SaveFileInfo, SaveHeader } from './format.js';
import { PreparedPayload, streamPayload } from './reader.js';
import { SaveWriter } from './writer.js';

export type ToWorker =
  | { op: 'save-open'; file: string; header: SaveHeader; sockPath: string }
  | { op: 'save-finish' }
  | { op: 'save-abort' }
  | { op: 'restore-prepare'; file: string; info: SaveFileInfo; hashOnly?: boolean; sameAs?: { dev: number; ino: number } }
  | { op: 'restore-stream'; sockPath: string }
  | { op: 'restore-verify' }
  | { op: 'restore-close' };

export interface WireError {
  code?: string;
  message: string;
  details?: Record<string, unknown>;
}

export type FromWorker =
  | { ev: 'listening' }
  | { ev: 'bytes'; bytes: number }
  | { ev: 'copied'; bytes: number }
  | { ev: 'finished'; result: { file: string; size: number; payloadBytes: number; sha256: string } }
  | { ev: 'aborted' }
  | { ev: 'prepared' }
  | { ev: 'progress'; bytes: number; total: number }
  | { ev: 'streamed'; bytes: number; sha256: string }
  | { ev: 'closed' }
  | { ev: 'error'; stage: string; error: WireError };

const port = parentPort!;
const send = (m: FromWorker) => port.postMessage(m);

function wire(e: unknown): WireError {
  if (isXenoError(e)) return { code: e.code, message: e.message, details: e.details };
  const err = e as NodeJS.ErrnoException;
  return { message: err?.message ?? String(e), details: err?.code ? { errno: err.code } : undefined };
}

/** Post `bytes` at most every 50 ms. */
function throttled(post: (n: number) => void): (n: number) => void {
  let last = 0;
  return (n) => {
    const now = Date.now();
    if (now - last >= 50) {
      last = now;
      post(n);
    }
  };
}

let writer: SaveWriter | undefined;
let server: net.Server | undefined;
let conn: net.Socket | undefined;
let saveSock: string | undefined;
let prepared: PreparedPayload | undefined;
let restoreSock: net.Socket | undefined;

function closeServer(): void {
  server?.close();
  server = undefined;
  if (saveSock) rmSync(saveSock, { force: true });
  saveSock = undefined;
}

/**
 * Read QEMU's stream into one reused 1 MiB buffer (net.Socket's `onread`) and write each read
 * straight to the file: no allocation per 64 KiB read, no stream machinery. Node offers `onread`
 * only to sockets it creates from a handle, so the accepted connection's handle (not yet reading:
 * pauseOnConnect) is moved to such a socket. Returns null when that is not possible; the caller
 * then pipes the accepted socket as a stream.
 */
function withReadBuffer(accepted: net.Socket, w: SaveWriter): net.Socket | null {
  const internal = accepted as unknown as { _handle?: object | null };
  const handle = internal._handle;
  if (!handle) return null;
  const buffer = Buffer.allocUnsafe(1024 * 1024);
  let failed = false;
  let sock: net.Socket;
  try {
    internal._handle = null;
    sock = new net.Socket({
      handle,
      readable: true,
      writable: true,
      onread: {
        buffer,
        callback: (n: number, buf: Uint8Array): boolean => {
          if (failed) return false;
          try {
            w.writeChunkSync(Buffer.from(buf.buffer, buf.byteOffset, n)); // buf is `buffer`
            return true;
          } catch (e) {
            failed = true;
            send({ ev: 'error', stage: 'copy', error: wire(e) });
            sock.destroy();
            void w.abort();
            return false;
          }
        },
      },
    } as net.SocketConstructorOpts);
  } catch {
    internal._handle = handle;
    return null;
  }
  sock.on('error', (e) => {
    if (failed) return;
    failed = true;
    send({ ev: 'error', stage: 'copy', error: wire(e) });
    void w.abort();
  });
  sock.on('end', () => {
    if (!failed) send({ ev: 'copied', bytes: w.payloadBytes });
  });
  sock.resume(); // flowing, so that 'end' is emitted at EOF
  return sock;
}

async function saveOpen(m: Extract<ToWorker, { op: 'save-open' }>): Promise<void> {
  const report = throttled((bytes) => send({ ev: 'bytes', bytes }));
  const w = await SaveWriter.open(m.file, m.header, { onBytes: report });
  writer = w;
  rmSync(m.sockPath, { force: true });
  saveSock = m.sockPath;
  const srv = net.createServer({ pauseOnConnect: true });
  server = srv;
  try {
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(m.sockPath, () => {
        srv.off('error', reject);
        resolve();
      });
    });
  } catch (e) {
    closeServer();
    writer = undefined;
    await w.abort();
    throw e;
  }
  srv.on('connection', (s: net.Socket) => {
    if (conn) {
      s.destroy(); // only QEMU, once
      return;
    }
    closeServer();
    const fast = withReadBuffer(s, w);
    if (fast) {
      conn = fast;
      return;
    }
    conn = s;
    w.consume(s).then(
      () => send({ ev: 'copied', bytes: w.payloadBytes }),
      (e: unknown) => send({ ev: 'error', stage: 'copy', error: wire(e) }),
    );
  });
  send({ ev: 'listening' });
}

async function handle(m: ToWorker): Promise<void> {
  switch (m.op) {
    case 'save-open':
      await saveOpen(m);
      return;
    case 'save-finish': {
      if (!writer) throw new XenoError('INTERNAL', 'no save in progress');
      const result = await writer.finish();
      writer = undefined;
      conn = undefined;
      send({ ev: 'finished', result });
      return;
    }
    case 'save-abort':
      closeServer();
      conn?.destroy();
      conn = undefined;
      await writer?.abort();
      writer = undefined;
      send({ ev: 'aborted' });
      return;
    case 'restore-prepare': {
      const info: SaveFileInfo = { ...m.info, headerRaw: Buffer.from(m.info.headerRaw) };
      prepared = await PreparedPayload.start(m.file, info, { hashOnly: m.hashOnly, sameAs: m.sameAs });
      send({ ev: 'prepared' });
      return;
    }
    case 'restore-verify': {
      // QEMU reads the file itself: the hash of what the read-ahead has read, checked against the trailer.
      if (!prepared) throw new XenoError('INTERNAL', 'no restore prepared');
      const p = prepared;
      const total = p.info.payloadLength;
      const report = throttled((bytes) => send({ ev: 'progress', bytes, total }));
      p.onRead = report;
      const sha256 = await p.verify();
      send({ ev: 'progress', bytes: p.readBytes, total });
      send({ ev: 'streamed', bytes: p.readBytes, sha256 });
      return;
    }
    case 'restore-stream': {
      if (!prepared) throw new XenoError('INTERNAL', 'no restore prepared');
      const p = prepared;
      const sock = await new Promise<net.Socket>((resolve, reject) => {
        const s = net.createConnection(m.sockPath);
        s.once('connect', () => {
          s.off('error', reject);
          resolve(s);
        });
        s.once('error', reject);
      });
      restoreSock = sock;
      const report = throttled((bytes) => send({ ev: 'progress', bytes, total: p.info.payloadLength }));
      const r = await streamPayload(p.file, p.info, sock, (pr) => report(pr.bytes), { prepared: p });
      send({ ev: 'progress', bytes: r.bytes, total: p.info.payloadLength });
      send({ ev: 'streamed', bytes: r.bytes, sha256: r.sha256 });
      return;
    }
    case 'restore-close':
      restoreSock?.destroy();
      restoreSock = undefined;
      await prepared?.close();
      prepared = undefined;
      send({ ev: 'closed' });
      return;
  }
}

port.on('message', (m: ToWorker) => {
  handle(m).catch((e: unknown) => send({ ev: 'error', stage: m.op, error: wire(e) }));
});
