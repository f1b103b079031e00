/**
 * The typed API client used by the CLI (and tests): HTTP+JSON over xenod's Unix socket.
 * Kept free of daemon-side imports so the CLI starts fast.
 */
import http from 'node:http';
import type { Duplex } from 'node:stream';

export const DEFAULT_SOCKET = '/run/xeno/xenod.sock';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export function socketPath(explicit?: string): string {
  return explicit ?? process.env.XENO_SOCKET ?? DEFAULT_SOCKET;
}

export class XenoClient {
  constructor(readonly socket: string = socketPath()) {}

  request<T>(method: string, path: string, body?: unknown, timeoutMs = 0): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const req = http.request(
        {
          socketPath: this.socket,
          method,
          path,
          headers: payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {},
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            const status = res.statusCode ?? 0;
            let parsed: unknown = text;
            if ((res.headers['content-type'] ?? '').includes('json')) {
              try {
                parsed = JSON.parse(text);
              } catch {
                /* leave as text */
              }
            }
            if (status >= 400) {
              const err = (parsed as { error?: { code?: string; message?: string } })?.error;
              reject(new ApiError(status, err?.code ?? 'HTTP_' + status, err?.message ?? text));
            } else resolve(parsed as T);
          });
        },
      );
      if (timeoutMs) req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer from xenod within ${timeoutMs} ms`)));
      req.on('error', (e: NodeJS.ErrnoException) => {
        if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') {
          reject(
            new ApiError(0, 'NO_DAEMON', `cannot reach xenod at ${this.socket} (${e.code}): is it running? Start it with \`xenod\` (or \`npx xenod\` from a checkout), or point XENO_SOCKET at its socket`),
          );
        } else reject(e);
      });
      if (payload) req.write(payload);
      req.end();
    });
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }

  post<T>(path: string, body: unknown = {}): Promise<T> {
    return this.request<T>('POST', path, body);
  }

  /** Open a raw two-way stream on an upgraded endpoint (consoles). */
  upgrade(path: string, protocol: string): Promise<Duplex> {
    return new Promise((resolve, reject) => {
      const req = http.request({ socketPath: this.socket, path, headers: { Connection: 'Upgrade', Upgrade: protocol } });
      req.on('upgrade', (_res, socket, head) => {
        if (head.length) socket.unshift(head);
        resolve(socket);
      });
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          let msg = Buffer.concat(chunks).toString();
          let code = 'HTTP_' + res.statusCode;
          try {
            const e = (JSON.parse(msg) as { error: { code: string; message: string } }).error;
            msg = e.message;
            code = e.code;
          } catch {
            /* plain text */
          }
          reject(new ApiError(res.statusCode ?? 0, code, msg));
        });
      });
      req.on('error', (e: NodeJS.ErrnoException) =>
        reject(e.code === 'ENOENT' || e.code === 'ECONNREFUSED' ? new ApiError(0, 'NO_DAEMON', `cannot reach xenod at ${this.socket}: is it running?`) : e),
      );
      req.end();
    });
  }
}

export function domPath(dom: string, suffix = ''): string {
  return `/v1/domains/${encodeURIComponent(dom)}${suffix}`;
}
