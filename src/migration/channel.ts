/**
 * The relocation control channel: JSON lines over TCP (protocol.ts). Until `secure()` lines are
 * plain and small (the handshake); after it every line is `HMAC<space>JSON`, the HMAC-SHA256 under
 * a per-direction key over an implicit per-direction sequence number and the JSON, so a line that
 * is altered, injected, replayed, reordered or dropped fails the check of the next one and ends
 * the session. A secure channel also pings and ends the session after a silence (60 s unless
 * xeno-relocation-timeout says otherwise; a ping every sixth of it): every wait of the protocol is
 * bounded even when the link is cut without a reset.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type net from 'node:net';
import { XenoError } from '../common/errors.js';
import { remoteCode, type Msg } from './protocol.js';

/** Before authentication: a line is at most this long (a hello is ~200 bytes). */
export const PREAUTH_MAX_LINE = 64 * 1024;
/** After: a prepare carries a domain config, a few KiB. */
const MAX_LINE = 1024 * 1024;
/** Messages received but not yet asked for (the protocol is lock-step: a few at most). */
const MAX_QUEUE = 16;
/** TCP keepalive (both ends) and the channel's own liveness (the default xeno-relocation-timeout). */
export const KEEPALIVE_MS = 10_000;
export const SILENCE_MS = 60_000;

export interface ChannelKeys {
  send: Buffer;
  recv: Buffer;
}

function seqMac(key: Buffer, seq: number, json: string): string {
  const n = Buffer.alloc(8);
  n.writeBigUInt64BE(BigInt(seq));
  return createHmac('sha256', key).update(n).update(json).digest('hex');
}

export class Channel {
  private buf = '';
  private readonly queue: Msg[] = [];
  private waiter?: { resolve: (m: Msg) => void; reject: (e: Error) => void; timer?: NodeJS.Timeout };
  private failure?: Error;
  private keys?: ChannelKeys;
  private sendSeq = 0;
  private recvSeq = 0;
  private pinger?: NodeJS.Timeout;
  private silence?: NodeJS.Timeout;

  constructor(
    readonly socket: net.Socket,
    /** Who is at the other end, for messages ("the target 10.0.0.2:8002"). */
    readonly peer: string,
    /** Silence from the peer that ends an authenticated session. */
    private readonly silenceMs = SILENCE_MS,
  ) {
    socket.setEncoding('utf8');
    socket.setNoDelay(true);
    socket.setKeepAlive(true, KEEPALIVE_MS);
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', (e) => this.fail(new XenoError('HOST_ERROR', `connection to ${peer} failed: ${e.message}`)));
    socket.on('close', () => this.fail(new XenoError('HOST_ERROR', `${peer} closed the connection`)));
  }

  get closed(): boolean {
    return this.failure !== undefined;
  }

  get secured(): boolean {
    return this.keys !== undefined;
  }

  /** From now on every line both ways is authenticated and sequenced; liveness starts. */
  secure(keys: ChannelKeys): void {
    if (this.queue.length || this.buf) return this.fail(new XenoError('HOST_ERROR', `${this.peer} sent lines ahead of the authentication`));
    this.keys = keys;
    this.pinger = setInterval(() => this.trySend({ t: 'ping' }), this.silenceMs / 6);
    this.heard();
  }

  private heard(): void {
    if (!this.keys || this.failure) return;
    if (this.silence) clearTimeout(this.silence);
    this.silence = setTimeout(() => this.fail(new XenoError('TIMEOUT', `no word from ${this.peer} for ${this.silenceMs / 1000} s: the session is ended`)), this.silenceMs);
  }

  private onData(chunk: string): void {
    if (this.failure) return;
    this.heard();
    this.buf += chunk;
    const max = this.keys ? MAX_LINE : PREAUTH_MAX_LINE;
    let nl: number;
    while (!this.failure && (nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      if (line.length > max) return this.fail(new XenoError('HOST_ERROR', `${this.peer} sent an over-long control line`));
      if (!line.trim()) continue;
      const msg = this.decode(line);
      if (!msg) return;
      if (msg.t === 'ping') continue;
      this.push(msg);
    }
    if (this.buf.length > max) this.fail(new XenoError('HOST_ERROR', `${this.peer} sent an over-long control line`));
  }

  private decode(line: string): Msg | undefined {
    let json = line;
    if (this.keys) {
      const sp = line.indexOf(' ');
      const want = seqMac(this.keys.recv, this.recvSeq, line.slice(sp + 1));
      const got = sp === 64 ? line.slice(0, 64) : '';
      if (got.length !== 64 || !timingSafeEqual(Buffer.from(want), Buffer.from(got))) {
        this.fail(new XenoError('HOST_ERROR', `integrity check failed on a control message from ${this.peer} (altered, injected, replayed, reordered or dropped on the way): the session is ended`, { tampered: true }));
        return undefined;
      }
      this.recvSeq++;
      json = line.slice(sp + 1);
    }
    let msg: Msg;
    try {
      msg = JSON.parse(json) as Msg;
    } catch {
      this.fail(new XenoError('HOST_ERROR', `${this.peer} sent a malformed control line`));
      return undefined;
    }
    if (!msg || typeof msg !== 'object' || typeof msg.t !== 'string') {
      this.fail(new XenoError('HOST_ERROR', `${this.peer} sent a message without a type`));
      return undefined;
    }
    return msg;
  }

  private push(m: Msg): void {
    const w = this.waiter;
    if (w) {
      this.waiter = undefined;
      if (w.timer) clearTimeout(w.timer);
      w.resolve(m);
    } else if (this.queue.length >= MAX_QUEUE) {
      this.fail(new XenoError('HOST_ERROR', `${this.peer} sent messages out of turn`));
    } else this.queue.push(m);
  }

  /** Ends the session now: the socket is destroyed, the pending wait fails with `e`. */
  fail(e: Error): void {
    if (this.failure) return;
    this.failure = e;
    if (this.pinger) clearInterval(this.pinger);
    if (this.silence) clearTimeout(this.silence);
    const w = this.waiter;
    this.waiter = undefined;
    if (w?.timer) clearTimeout(w.timer);
    w?.reject(e);
    this.socket.destroy();
  }

  /** Why the session ended (undefined while it goes on). */
  get error(): Error | undefined {
    return this.failure;
  }

  private encode(m: Msg): string {
    const json = JSON.stringify(m);
    if (!this.keys) return json + '\n';
    return `${seqMac(this.keys.send, this.sendSeq++, json)} ${json}\n`;
  }

  send(m: Msg): void {
    if (this.failure) throw this.failure;
    this.socket.write(this.encode(m));
  }

  private trySend(m: Msg): void {
    try {
      this.send(m);
    } catch {
      /* ended */
    }
  }

  /** The next message; `error` from the other side becomes a XenoError with its code. */
  async recv<T extends Msg['t']>(expect: T, timeoutMs = 0): Promise<Extract<Msg, { t: T }>> {
    return this.recvOneOf([expect], timeoutMs);
  }

  /** The next message, which must be one of `expect`. */
  async recvOneOf<T extends Msg['t']>(expect: T[], timeoutMs = 0): Promise<Extract<Msg, { t: T }>> {
    const what = expect.join("' or '");
    const m = await this.next(timeoutMs, what);
    if (m.t === 'error') throw new XenoError(remoteCode(m.code), String(m.message), { remote: true });
    if (m.t === 'abort') throw new XenoError('HOST_ERROR', `${this.peer} aborted: ${String(m.reason)}`, { abort: true });
    if (!(expect as string[]).includes(m.t)) throw new XenoError('HOST_ERROR', `${this.peer} sent '${m.t}' where '${what}' was expected`);
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

  /**
   * Send an error line (best effort: written to the kernel at once on an idle socket) and destroy
   * the socket: a refused or failed peer holds nothing here, whatever it does with its end.
   */
  refuse(code: string, message: string): void {
    if (!this.failure) {
      try {
        this.socket.write(this.encode({ t: 'error', code, message }));
      } catch {
        /* already gone */
      }
    }
    this.fail(new XenoError('HOST_ERROR', 'session ended'));
  }

  /** Tell the other side the session is over and destroy the socket (after flushing the last line). */
  close(): void {
    if (this.failure) return;
    this.failure = new XenoError('HOST_ERROR', 'session ended');
    if (this.pinger) clearInterval(this.pinger);
    if (this.silence) clearTimeout(this.silence);
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }
}
