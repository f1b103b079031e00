/**
 * The relocation protocol (xm migrate), version 1: a small JSON-lines control channel over TCP
 * between the source xenod (client.ts) and the target xenod's relocation server (server.ts).
 * Xen's relocation had no authentication; here both ends prove they hold the same pre-shared key
 * (`xeno-relocation-key-file`) by an HMAC over fresh nonces from both sides, before anything else
 * is said, and QEMU's own migration stream is encrypted and authenticated with TLS-PSK under a key
 * derived from that key and those nonces (a new one per migration; the file's key never reaches
 * QEMU). Storage is shared: both hosts see the same disk paths; only RAM and device state move.
 *
 *   source xenod                                target xenod (relocation server)
 *   ------------                                --------------------------------
 *   connect HOST:PORT ------------------------> peer address checked against hosts-allow
 *   hello {proto, nonce_s} -------------------> 
 *                       <---------------------- hello {proto, nonce_t, proof_t = HMAC(k, "target"|nonce_s|nonce_t)}
 *   checks proof_t (a wrong key stops here)
 *   auth {proof_s = HMAC(k, "source"|nonce_t|nonce_s)} ->  checks proof_s
 *                       <---------------------- welcome {host}
 *   prepare {name, uuid, config, machineType,
 *            qemuVersion, memoryMb, state} ---> checks: QEMU not older, machine type offered, name
 *                                                free, kernel/disks exist, memory fits (under the
 *                                                host-memory lock); starts QEMU with -incoming defer,
 *                                                TLS-PSK creds, migrate-incoming tcp:LOCAL_ADDR:0
 *                       <---------------------- prepared {domid, port}
 *   offline: pause the guest
 *   QMP migrate tcp:HOST:port (TLS-PSK) ======> QEMU's precopy stream (iterative RAM copy) ======>
 *   query-migrate until completed
 *   done {paused} ----------------------------> waits for QEMU's incoming migration to complete
 *                       <---------------------- loaded            (guest there, still paused)
 *   commit -----------------------------------> resumes it (or leaves it paused if it was paused)
 *                       <---------------------- ok {domid, state}
 *   releases its copy (QEMU quits, vifs unplugged)
 *
 * Failures: any `error {code, message}` (either way) or a closed connection ends the session.
 * Before `commit` the target destroys its half-made domain and the source cancels QEMU's migration
 * and resumes its guest (left paused if it was paused): nothing is lost, nothing is left half-made.
 * After `commit` without `ok` (the connection died in that window) the outcome cannot be known on
 * either side: the source keeps its copy paused and the target keeps its copy paused (not run
 * twice, not lost); both say so, and the admin unpauses the right one.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import type net from 'node:net';
import path from 'node:path';
import { ERROR_CATALOGUE, XenoError, type ErrorCode } from '../common/errors.js';
import type { DomainConfig } from '../model/domain-config.js';

export const PROTOCOL_VERSION = 1;
export const DEFAULT_RELOCATION_PORT = 8002;
/** The TLS-PSK identity both QEMUs use. */
export const PSK_IDENTITY = 'xeno';
/** QOM id of the TLS credentials object in either QEMU. */
export const TLS_OBJECT_ID = 'xenomig0';
/** A control line longer than this ends the session (a config is a few KiB). */
const MAX_LINE = 1024 * 1024;

export type Msg =
  | { t: 'hello'; proto: number; xeno: string; nonce: string; proof?: string }
  | { t: 'auth'; proof: string }
  | { t: 'welcome'; host: string }
  | { t: 'prepare'; name: string; uuid: string; config: DomainConfig; machineType: string; qemuVersion: string; memoryMb: number; state: 'running' | 'paused' }
  | { t: 'prepared'; domid: number; port: number }
  | { t: 'done'; paused: boolean }
  | { t: 'loaded' }
  | { t: 'commit' }
  | { t: 'ok'; domid: number; state: 'running' | 'paused' }
  | { t: 'abort'; reason: string }
  | { t: 'error'; code: string; message: string };

// ---- the key ------------------------------------------------------------------------------

/**
 * Reads the pre-shared key: hex (e.g. `openssl rand -hex 32`), at least 16 bytes, in a file no one
 * but its owner may read.
 */
export function loadRelocationKey(file: string | undefined): Buffer {
  if (!file) {
    throw new XenoError('CONFIG_INVALID', 'no relocation key: set (xeno-relocation-key-file /etc/xeno/relocation.psk) in the daemon config (the same key on both hosts; create it with `openssl rand -hex 32`)');
  }
  let text: string;
  try {
    const st = statSync(file);
    if ((st.mode & 0o077) !== 0) throw new XenoError('CONFIG_INVALID', `relocation key file ${file} is readable by others (mode ${(st.mode & 0o777).toString(8)}): chmod 600 it`);
    text = readFileSync(file, 'utf8').trim();
  } catch (e) {
    if (e instanceof XenoError) throw e;
    throw new XenoError('CONFIG_INVALID', `cannot read relocation key file ${file}: ${(e as Error).message}`);
  }
  if (!/^[0-9a-fA-F]+$/.test(text) || text.length % 2 !== 0 || text.length < 32) {
    throw new XenoError('CONFIG_INVALID', `relocation key file ${file} must hold at least 32 hex digits (e.g. \`openssl rand -hex 32\`)`);
  }
  return Buffer.from(text, 'hex');
}

export function newNonce(): string {
  return randomBytes(32).toString('hex');
}

function hmac(key: Buffer, ...parts: string[]): string {
  return createHmac('sha256', key).update(`xeno-relocation/${PROTOCOL_VERSION}|${parts.join('|')}`).digest('hex');
}

/** What the target proves: it knows the key, answering the source's nonce. */
export function targetProof(key: Buffer, sourceNonce: string, targetNonce: string): string {
  return hmac(key, 'target', sourceNonce, targetNonce);
}

/** What the source proves; the order and label differ so no proof can be reflected back. */
export function sourceProof(key: Buffer, targetNonce: string, sourceNonce: string): string {
  return hmac(key, 'source', targetNonce, sourceNonce);
}

/** The per-migration TLS-PSK key for QEMU's stream (hex). */
export function sessionTlsKey(key: Buffer, sourceNonce: string, targetNonce: string): string {
  return hmac(key, 'qemu-tls', sourceNonce, targetNonce);
}

export function proofMatches(expected: string, got: unknown): boolean {
  if (typeof got !== 'string' || got.length !== expected.length) return false;
  return timingSafeEqual(Buffer.from(expected), Buffer.from(got));
}

/**
 * Writes DIR/keys.psk (`xeno:HEX`) for QEMU's tls-creds-psk object; returns DIR. Group-readable
 * (whatever the umask): in a run dir the group is the unprivileged QEMU user's (setgid dir).
 */
export function writePskDir(dir: string, hexKey: string): string {
  mkdirSync(dir, { recursive: true, mode: 0o750 });
  chmodSync(dir, 0o2750);
  const file = path.join(dir, 'keys.psk');
  writeFileSync(file, `${PSK_IDENTITY}:${hexKey}\n`, { mode: 0o640 });
  chmodSync(file, 0o640);
  return dir;
}

// ---- the wire -----------------------------------------------------------------------------

/** An error code the other side sent, kept when it is one of ours. */
export function remoteCode(code: unknown): ErrorCode {
  return typeof code === 'string' && code in ERROR_CATALOGUE ? (code as ErrorCode) : 'HOST_ERROR';
}

/** JSON lines over a socket: send(), and recv() in order, with a timeout; `error` lines throw. */
export class Channel {
  private buf = '';
  private readonly queue: Msg[] = [];
  private waiter?: { resolve: (m: Msg) => void; reject: (e: Error) => void; timer?: NodeJS.Timeout };
  private failure?: Error;

  constructor(
    readonly socket: net.Socket,
    /** Who is at the other end, for messages ("the target 10.0.0.2:8002"). */
    readonly peer: string,
  ) {
    socket.setEncoding('utf8');
    socket.setNoDelay(true);
    socket.on('data', (chunk: string) => {
      this.buf += chunk;
      if (this.buf.length > MAX_LINE) return this.fail(new XenoError('HOST_ERROR', `${peer} sent an over-long control line`));
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        if (!line.trim()) continue;
        let msg: Msg;
        try {
          msg = JSON.parse(line) as Msg;
        } catch {
          return this.fail(new XenoError('HOST_ERROR', `${peer} sent a malformed control line`));
        }
        if (!msg || typeof msg !== 'object' || typeof msg.t !== 'string') return this.fail(new XenoError('HOST_ERROR', `${peer} sent a message without a type`));
        this.push(msg);
      }
    });
    socket.on('error', (e) => this.fail(new XenoError('HOST_ERROR', `connection to ${peer} failed: ${e.message}`)));
    socket.on('close', () => this.fail(new XenoError('HOST_ERROR', `${peer} closed the connection`)));
  }

  get closed(): boolean {
    return this.failure !== undefined;
  }

  private push(m: Msg): void {
    const w = this.waiter;
    if (w) {
      this.waiter = undefined;
      if (w.timer) clearTimeout(w.timer);
      w.resolve(m);
    } else this.queue.push(m);
  }

  private fail(e: Error): void {
    if (this.failure) return;
    this.failure = e;
    const w = this.waiter;
    this.waiter = undefined;
    if (w?.timer) clearTimeout(w.timer);
    w?.reject(e);
    this.socket.destroy();
  }

  send(m: Msg): void {
    if (this.failure) throw this.failure;
    this.socket.write(JSON.stringify(m) + '\n');
  }

  /** The next message; `error` from the other side becomes a XenoError with its code. */
  async recv<T extends Msg['t']>(expect: T, timeoutMs = 0): Promise<Extract<Msg, { t: T }>> {
    const m = await this.next(timeoutMs, expect);
    if (m.t === 'error') throw new XenoError(remoteCode(m.code), String(m.message));
    if (m.t === 'abort') throw new XenoError('HOST_ERROR', `${this.peer} aborted: ${m.reason}`, { abort: true });
    if (m.t !== expect) throw new XenoError('HOST_ERROR', `${this.peer} sent '${m.t}' where '${expect}' was expected`);
    return m as Extract<Msg, { t: T }>;
  }

  private next(timeoutMs: number, what: string): Promise<Msg> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<Msg>((resolve, reject) => {
      this.waiter = { resolve, reject };
      if (timeoutMs > 0) {
        this.waiter.timer = setTimeout(() => this.fail(new XenoError('TIMEOUT', `${this.peer} did not answer (${what}) within ${timeoutMs / 1000} s`)), timeoutMs);
      }
    });
  }

  /** Send an error line (best effort) and close. */
  refuse(code: string, message: string): void {
    try {
      if (!this.failure) this.socket.end(JSON.stringify({ t: 'error', code, message } satisfies Msg) + '\n');
    } catch {
      /* already gone */
    }
    this.failure ??= new XenoError('HOST_ERROR', 'session ended');
  }

  close(): void {
    this.failure ??= new XenoError('HOST_ERROR', 'session ended');
    this.socket.end();
  }
}
