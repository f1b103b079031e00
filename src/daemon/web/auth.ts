/**
 * The web console's sessions. Login trades the token (the content of the web token file) for a
 * session: an HttpOnly, SameSite=Strict cookie, and a CSRF token the page sends back in the
 * `x-csrf-token` header of every state-changing request (and as `?csrf=` on a WebSocket, which
 * cannot carry headers). A WebSocket must also come from the console's own origin.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import path from 'node:path';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { XenoError } from '../../common/errors.js';
import type { DaemonConfig } from '../../model/daemon-config.js';

export const SESSION_COOKIE = 'xeno_session';
export const CSRF_HEADER = 'x-csrf-token';
const SESSION_TTL_MS = 12 * 3600 * 1000;
/** Sessions kept at once; a new login beyond this drops the oldest. */
const MAX_SESSIONS = 64;

export function webTokenFile(config: DaemonConfig): string {
  return config.webTokenFile ?? path.join(config.stateDir, 'web.token');
}

export function webUrl(web: { host: string; port: number }): string {
  return `http://${web.host.includes(':') ? `[${web.host}]` : web.host}:${web.port}/`;
}

function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

export function cookieOf(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

interface Session {
  csrf: string;
  expires: number;
}

export class WebSessions {
  private readonly sessions = new Map<string, Session>();

  constructor(private readonly token: string) {}

  /** A new session for the right token; undefined for a wrong one. */
  login(token: string): { id: string; csrf: string } | undefined {
    if (!sameSecret(token.trim(), this.token)) return undefined;
    const id = randomBytes(32).toString('hex');
    const csrf = randomBytes(32).toString('hex');
    this.sessions.set(id, { csrf, expires: Date.now() + SESSION_TTL_MS });
    while (this.sessions.size > MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value!);
    return { id, csrf };
  }

  logout(id: string): void {
    this.sessions.delete(id);
  }

  /** The live session named by the request's cookie. */
  of(req: FastifyRequest): { id: string; session: Session } | undefined {
    const id = cookieOf(req.headers.cookie, SESSION_COOKIE);
    const session = id ? this.sessions.get(id) : undefined;
    if (!id || !session) return undefined;
    if (session.expires < Date.now()) {
      this.sessions.delete(id);
      return undefined;
    }
    return { id, session };
  }

  /**
   * The check in front of every /api route: a session, and for anything but GET/HEAD (or for a
   * WebSocket) its CSRF token; a WebSocket also from our own origin.
   */
  check(req: FastifyRequest): { id: string; csrf: string } {
    const s = this.of(req);
    if (!s) throw new XenoError('UNAUTHORIZED', 'not logged in to the web console');
    const ws = String(req.headers.upgrade ?? '').toLowerCase() === 'websocket';
    if (ws) {
      const origin = req.headers.origin;
      if (origin !== undefined && origin !== `http://${req.headers.host}`) throw new XenoError('FORBIDDEN', `WebSocket from another origin (${origin})`);
      const given = new URL(req.url, 'http://x').searchParams.get('csrf') ?? '';
      if (!sameSecret(given, s.session.csrf)) throw new XenoError('FORBIDDEN', 'a WebSocket needs the CSRF token (?csrf=)');
    } else if (req.method !== 'GET' && req.method !== 'HEAD') {
      const given = req.headers[CSRF_HEADER];
      if (typeof given !== 'string' || !sameSecret(given, s.session.csrf)) throw new XenoError('FORBIDDEN', `a state-changing request needs the ${CSRF_HEADER} header`);
    }
    return { id: s.id, csrf: s.session.csrf };
  }
}

export function setSessionCookie(reply: FastifyReply, id: string, maxAgeSec = SESSION_TTL_MS / 1000): void {
  void reply.header('set-cookie', `${SESSION_COOKIE}=${id}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${maxAgeSec}`);
}

/** A refused WebSocket handshake (one answer for every upgrade door: ../refuse-upgrade.ts). */
export { refuseUpgrade } from '../refuse-upgrade.js';
