/** What the web console's tests share: a WebSocket handshake's status, polling, the artifacts directory. */
import http from 'node:http';
import path from 'node:path';
import { REPO, sleep } from './harness.js';

/** Where screenshots go: $XENO_ARTIFACTS, or the repo's test-artifacts/ (git-ignored). */
export const ARTIFACTS = process.env.XENO_ARTIFACTS ? path.resolve(process.env.XENO_ARTIFACTS) : path.join(REPO, 'test-artifacts');

/** Status of a WebSocket handshake (101 when accepted). */
export function wsStatus(port: number, urlPath: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1', port, path: urlPath,
      headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', ...headers },
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve(res.statusCode ?? 0);
    });
    req.on('response', (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

export async function until<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

/** A session on a web console (cookie and CSRF token), for requests made outside the browser. */
export async function webSession(base: string, token: string): Promise<{ cookie: string; csrf: string }> {
  const r = await fetch(`${base}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) });
  if (r.status !== 200) throw new Error(`login: ${r.status}`);
  const { csrf } = (await r.json()) as { csrf: string };
  return { cookie: (r.headers.get('set-cookie') ?? '').split(';')[0]!, csrf };
}
