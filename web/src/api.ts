/** The page's side of the API: same-origin fetches under /api, the CSRF header on every POST. */
let csrf = '';

export class ApiError extends Error {
  constructor(readonly status: number, message: string, readonly code?: string) {
    super(message);
  }
}

export function csrfToken(): string {
  return csrf;
}

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { 'x-csrf-token': csrf };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const r = await fetch(path.startsWith('/login') ? path : `/api${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let data: any = {};
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    data = { text };
  }
  if (!r.ok) throw new ApiError(r.status, data.error?.message ?? `${r.status} ${r.statusText}`, data.error?.code);
  return data as T;
}

/**
 * A long operation asked with `progress: true`: the daemon answers NDJSON lines, progress first,
 * then one result or error line (routes/streamed.ts). `onProgress` sees each progress line.
 */
export async function postStreamed<T, P>(path: string, body: object, onProgress: (p: P) => void): Promise<T> {
  const r = await fetch(`/api${path}`, { method: 'POST', headers: { 'x-csrf-token': csrf, 'content-type': 'application/json' }, body: JSON.stringify({ ...body, progress: true }) });
  if (!r.ok || !r.body) {
    const data = await r.json().catch(() => ({}));
    throw new ApiError(r.status, data.error?.message ?? `${r.status} ${r.statusText}`, data.error?.code);
  }
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = JSON.parse(buf.slice(0, nl)) as { event: string; result?: T; error?: { code: string; message: string } } & P;
      buf = buf.slice(nl + 1);
      if (line.event === 'progress') onProgress(line);
      else if (line.event === 'result') return line.result as T;
      else if (line.event === 'error') throw new ApiError(500, line.error?.message ?? 'failed', line.error?.code);
    }
  }
  throw new ApiError(502, 'the daemon closed the answer before the end');
}

export const get = <T>(path: string) => call<T>('GET', path);
export const post = <T>(path: string, body: unknown = {}) => call<T>('POST', path, body);

/** The session's CSRF token after a reload; false when not logged in. */
export async function resume(): Promise<boolean> {
  try {
    csrf = (await get<{ csrf: string }>('/session')).csrf;
    return true;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return false;
    throw e;
  }
}

export async function login(token: string): Promise<void> {
  csrf = (await call<{ csrf: string }>('POST', '/login', { token })).csrf;
}

export async function logout(): Promise<void> {
  await post('/logout');
  csrf = '';
}

type Listener = (e: LifecycleEvent) => void;
export interface LifecycleEvent {
  ts: number;
  domid: number | null;
  name: string | null;
  kind: string;
  message: string;
}
const listeners = new Set<Listener>();
let source: EventSource | undefined;

/** Lifecycle events pushed by xenod (Server-Sent Events); one stream for the whole page. */
export function onEvent(fn: Listener): () => void {
  if (!source) {
    source = new EventSource('/api/events/stream');
    source.addEventListener('domain', (m) => {
      const e = JSON.parse((m as MessageEvent).data) as LifecycleEvent;
      for (const l of listeners) l(e);
    });
  }
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export const mib = (bytes: number) => bytes / (1024 * 1024);
export const fmtMiB = (m: number) => (m >= 1024 ? `${(m / 1024).toFixed(1)} GiB` : `${Math.round(m)} MiB`);
