/**
 * The typed API client used by the CLI (and tests): HTTP+JSON over xenod's Unix socket.
 * Kept free of daemon-side imports so the CLI starts fast.
 */
import type { Duplex } from 'node:stream';
import { WireError, exchange, upgrade } from './wire.js';

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

  async request<T>(method: string, path: string, body?: unknown, timeoutMs = 0): Promise<T> {
    const res = await exchange(this.socket, { method, path, body: body === undefined ? undefined : JSON.stringify(body) }, timeoutMs).catch((e: unknown) => {
      throw e instanceof WireError ? new ApiError(0, e.code, e.message) : e;
    });
    const text = res.body.toString('utf8');
    let parsed: unknown = text;
    if ((res.headers['content-type'] ?? '').includes('json')) {
      try {
        parsed = JSON.parse(text);
      } catch {
        /* leave as text */
      }
    }
    if (res.status >= 400) {
      const err = (parsed as { error?: { code?: string; message?: string } })?.error;
      throw new ApiError(res.status, err?.code ?? 'HTTP_' + res.status, err?.message ?? text);
    }
    return parsed as T;
  }

  /** A request whose answer is a stream of lines (NDJSON progress): each line as it arrives. */
  async requestLines(method: string, path: string, body: unknown, onLine: (line: string) => void): Promise<{ status: number; contentType: string; text: string }> {
    let pending = '';
    let streaming = false;
    const res = await exchange(this.socket, {
      method,
      path,
      body: JSON.stringify(body),
      onBody: (chunk, head) => {
        streaming = head.status === 200 && (head.headers['content-type'] ?? '').includes('ndjson');
        if (!streaming) return;
        pending += chunk.toString('utf8');
        let nl: number;
        while ((nl = pending.indexOf('\n')) >= 0) {
          onLine(pending.slice(0, nl));
          pending = pending.slice(nl + 1);
        }
      },
    }).catch((e: unknown) => {
      throw e instanceof WireError ? new ApiError(0, e.code, e.message) : e;
    });
    if (streaming && pending) onLine(pending);
    return { status: res.status, contentType: res.headers['content-type'] ?? '', text: streaming ? '' : res.body.toString('utf8') };
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }

  post<T>(path: string, body: unknown = {}): Promise<T> {
    return this.request<T>('POST', path, body);
  }

  /** Open a raw two-way stream on an upgraded endpoint (consoles). */
  async upgrade(path: string, protocol: string): Promise<Duplex> {
    const r = await upgrade(this.socket, path, protocol).catch((e: unknown) => {
      throw e instanceof WireError ? new ApiError(0, e.code, e.message) : e;
    });
    if (r.socket) return r.socket;
    let msg = r.body.toString('utf8');
    let code = 'HTTP_' + r.status;
    try {
      const e = (JSON.parse(msg) as { error: { code: string; message: string } }).error;
      msg = e.message;
      code = e.code;
    } catch {
      /* plain text */
    }
    throw new ApiError(r.status, code, msg);
  }
}

export function domPath(dom: string, suffix = ''): string {
  return `/v1/domains/${encodeURIComponent(dom)}${suffix}`;
}
