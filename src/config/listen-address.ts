/** `ADDRESS:PORT` of a TCP listener (`[v6]:PORT` for IPv6): an IP address, never a wildcard guess. */
import { isIP } from 'node:net';
import { XenoError } from '../common/errors.js';

export interface ListenAddress {
  host: string;
  port: number;
}

export function parseListenAddress(v: string, what = 'listen address'): ListenAddress {
  const m = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(v.trim()) ?? /^([^:[\]]+):(\d{1,5})$/.exec(v.trim());
  if (!m) throw new XenoError('CONFIG_INVALID', `${what} "${v}" is not ADDRESS:PORT (e.g. 127.0.0.1:9101 or [::1]:9101)`);
  const host = m[1]!;
  const port = Number(m[2]);
  if (isIP(host) === 0) throw new XenoError('CONFIG_INVALID', `${what} "${v}": "${host}" is not an IP address`);
  if (port < 1 || port > 65535) throw new XenoError('CONFIG_INVALID', `${what} "${v}": port must be between 1 and 65535`);
  return { host, port };
}

/** Loopback only (127.0.0.0/8, ::1): the one case where no token is asked. */
export function isLoopback(host: string): boolean {
  return host === '::1' || /^127\./.test(host) || /^::ffff:127\./i.test(host);
}
