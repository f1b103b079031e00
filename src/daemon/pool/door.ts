/**
 * The pool door: how one pooled xenod asks another to act (docs/pool.md). An HTTPS listener on
 * xeno-pool-address:xeno-pool-api-port that takes only clients with a certificate of the pool CA
 * whose CN is a current member of the pool (an ejected host's certificate no longer opens it), and
 * passes each request on, unchanged, to this xenod's own API socket, marked with the caller's name
 * (so the request is never forwarded again). doorRequest() is the caller's side.
 */
import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { ERROR_CATALOGUE, XenoError, type ErrorCode } from '../../common/errors.js';
import type { PoolConfig } from '../../model/daemon-config.js';
import { readTls } from '../../pool/certs.js';
import type { HostRecord } from '../../pool/member.js';
import type { PoolService } from '../../pool/service.js';
import { acceptConsoleUpgrade } from './console-forward.js';
import { refuseUpgrade } from '../refuse-upgrade.js';

export const FORWARDED_HEADER = 'x-xeno-pool-from';

export async function openPoolDoor(pool: PoolService, unixPath: string): Promise<https.Server> {
  const cfg = pool.config.pool!;
  const tls = readTls(cfg);
  /** The caller's pool name, if its certificate's CN is a current member; else undefined (logged). */
  const member = (req: http.IncomingMessage): string | undefined => {
    const cn = (req.socket as TLSSocket).getPeerCertificate()?.subject?.CN;
    const who = typeof cn === 'string' ? cn : '';
    if (who && pool.member.members.has(who)) return who;
    pool.log.warn({ from: req.socket.remoteAddress, cn: who }, 'pool door: a caller that is not a member of the pool');
    return undefined;
  };
  const forbidden = (req: http.IncomingMessage) =>
    new XenoError('FORBIDDEN', `${(req.socket as TLSSocket).getPeerCertificate()?.subject?.CN || 'this certificate'} is not a member of the pool`);
  const server = https.createServer({ ...tls, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' }, (req, res) => {
    const who = member(req);
    if (!who) {
      const e = forbidden(req);
      res.writeHead(e.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: e.code, message: e.message } }));
      return;
    }
    const headers = { ...req.headers, [FORWARDED_HEADER]: who };
    delete headers.host;
    const inner = http.request({ socketPath: unixPath, method: req.method, path: req.url, headers }, (ir) => {
      res.writeHead(ir.statusCode ?? 502, ir.headers);
      ir.pipe(res);
    });
    inner.on('error', (e) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'INTERNAL', message: `pool door: ${e.message}` } }));
    });
    req.pipe(inner);
  });
  // another host's `xeno console` of a guest of ours (console-forward.ts)
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    const who = member(req);
    if (!who) {
      refuseUpgrade(socket, forbidden(req));
      return;
    }
    acceptConsoleUpgrade(unixPath, who, req, socket, head);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(cfg.apiPort, cfg.address, () => resolve());
  });
  pool.log.info(`pool door listening on ${cfg.address}:${cfg.apiPort}`);
  return server;
}

/**
 * A request to another host's door, with this host's certificate; the server must present a
 * certificate of the pool CA for that host's address. Resolves with the raw response (streamed).
 */
export function doorRequest(cfg: PoolConfig, host: HostRecord, method: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<http.IncomingMessage> {
  const tls = readTls(cfg);
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: host.address, port: host.apiPort, method, path, ...tls, minVersion: 'TLSv1.3', timeout: 30_000,
        headers: { ...headers, ...(body !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {}) },
        agent: false,
      },
      resolve,
    );
    req.on('timeout', () => req.destroy(new Error('no answer within 30 s')));
    req.on('error', (e) => reject(new XenoError('HOST_ERROR', `pool: host ${host.name} (${host.address}:${host.apiPort}) did not answer: ${e.message}`)));
    req.end(body);
  });
}

/** doorRequest() answered as JSON (an error answer becomes the same XenoError-shaped failure). */
export async function doorJson<T>(cfg: PoolConfig, host: HostRecord, method: string, path: string, body?: unknown): Promise<T> {
  const res = await doorRequest(cfg, host, method, path, body === undefined ? undefined : JSON.stringify(body));
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    /* text */
  }
  if ((res.statusCode ?? 500) >= 400) {
    const err = (parsed as { error?: { code?: string; message?: string } }).error;
    const code = err?.code && Object.hasOwn(ERROR_CATALOGUE, err.code) ? (err.code as ErrorCode) : 'HOST_ERROR';
    throw new XenoError(code, `${host.name}: ${err?.message ?? text}`);
  }
  return parsed as T;
}
