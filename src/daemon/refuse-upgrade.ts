/** A refused upgrade (WebSocket, console), answered as a JSON error on the raw socket (flushed before it closes). */
import type { Duplex } from 'node:stream';
import { XenoError } from '../common/errors.js';

export function refuseUpgrade(socket: Duplex, e: unknown): void {
  const err = e instanceof XenoError ? e : new XenoError('INTERNAL', String(e));
  const body = JSON.stringify({ error: { code: err.code, message: err.message } });
  socket.end(`HTTP/1.1 ${err.status} ${err.code}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}
