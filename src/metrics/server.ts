/**
 * The metrics listener (`xenod --metrics ADDRESS:PORT`): GET /metrics on plain HTTP, bound only
 * where told. Beyond loopback it asks for `Authorization: Bearer TOKEN`, the token being the
 * content of the token file (made, 0600, at first start when absent).
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { Logger } from 'pino';
import { XenoError } from '../common/errors.js';
import { isLoopback } from '../config/listen-address.js';
import type { MetricsExporter } from './exporter.js';

export interface MetricsServerOptions {
  host: string;
  port: number;
  /** Required beyond loopback. */
  tokenFile: string;
  log: Logger;
}

/** The token in the file, made when the file does not exist yet. */
export function loadOrMakeToken(file: string, what = 'metrics'): string {
  if (!existsSync(file)) writeFileSync(file, randomBytes(32).toString('hex') + '\n', { mode: 0o600, flag: 'wx' });
  const token = readFileSync(file, 'utf8').trim();
  if (token.length < 16) throw new XenoError('CONFIG_INVALID', `${what} token file ${file} holds less than 16 characters`);
  return token;
}

function bearerMatches(header: string | undefined, token: Buffer): boolean {
  const m = /^Bearer\s+(\S+)$/i.exec(header ?? '');
  if (!m) return false;
  const given = Buffer.from(m[1]!);
  return given.length === token.length && timingSafeEqual(given, token);
}

export async function startMetricsServer(exporter: MetricsExporter, opts: MetricsServerOptions): Promise<http.Server> {
  const token = isLoopback(opts.host) ? undefined : Buffer.from(loadOrMakeToken(opts.tokenFile));
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' || url !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: GET /metrics\n');
      return;
    }
    if (token && !bearerMatches(req.headers.authorization, token)) {
      res.writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer realm="xeno-metrics"' }).end('a bearer token is required\n');
      return;
    }
    exporter.scrape().then(
      (text) => res.writeHead(200, { 'content-type': exporter.registry.contentType }).end(text),
      (e: unknown) => {
        opts.log.error({ err: e }, 'metrics scrape failed');
        res.writeHead(500, { 'content-type': 'text/plain' }).end('scrape failed\n');
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: opts.host, port: opts.port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  opts.log.info({ host: opts.host, port: opts.port, token: token ? opts.tokenFile : 'none (loopback)' }, 'metrics endpoint listening');
  return server;
}
