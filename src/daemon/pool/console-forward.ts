/**
 * `xeno console NAME` from any host of the pool: a console upgrade about a guest this xenod does
 * not run, which running/<name> places on another live host, is passed to that host's pool door
 * as an upgrade of its own (TLS with this host's certificate, marked as forwarded so it goes no
 * further), and the two streams are joined. The door's side (acceptConsoleUpgrade) checks the
 * caller as for any request and passes the upgrade on to its own xenod's socket.
 */
import type { IncomingMessage } from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { XenoError, errorMessage } from '../../common/errors.js';
import { refuseUpgrade } from '../refuse-upgrade.js';
import { readTls } from '../../pool/certs.js';
import { keys } from '../../pool/etcd.js';
import type { RunningRecord } from '../../pool/member.js';
import type { PoolService } from '../../pool/service.js';
import { FORWARDED_HEADER } from './door.js';

const CONNECT_MS = 10_000;

/** The upgrade request as text: only the path and the headers the console protocol needs. */
function upgradeText(path: string, from?: string): string {
  return `GET ${path} HTTP/1.1\r\nHost: xeno\r\nConnection: Upgrade\r\nUpgrade: xeno-console\r\n${from ? `${FORWARDED_HEADER}: ${from}\r\n` : ''}\r\n`;
}

/** Joins two byte streams both ways; either end closing closes the other. */
function join(a: Duplex, b: Duplex, head: Buffer): void {
  if (head.length) b.write(head);
  a.pipe(b);
  b.pipe(a);
  const end = () => {
    a.destroy();
    b.destroy();
  };
  a.on('error', end).on('close', end);
  b.on('error', end).on('close', end);
}


/**
 * The caller's side. True when the console is another host's and this call took the socket over
 * (joined, or answered with the error); false when it is for the local console route.
 */
export async function forwardConsoleUpgrade(pool: PoolService, dom: string, req: IncomingMessage, socket: Duplex, head: Buffer): Promise<boolean> {
  if (req.headers[FORWARDED_HEADER]) return false;
  const run = await pool.etcd.getJson<RunningRecord>(keys.running(dom)).catch(() => null);
  if (!run || run.host === pool.host) return false;
  const host = await pool.liveHost(run.host);
  if (!host) {
    refuseUpgrade(socket, new XenoError('HOST_ERROR', `${dom} runs on ${run.host}, which is not up in the pool`));
    return true;
  }
  const remote = tls.connect({ host: host.address, port: host.apiPort, ...readTls(pool.config.pool!), minVersion: 'TLSv1.3' });
  remote.setTimeout(CONNECT_MS, () => remote.destroy(new Error(`no answer within ${CONNECT_MS / 1000} s`)));
  remote.once('error', (e) => refuseUpgrade(socket, new XenoError('HOST_ERROR', `pool: host ${host.name} (${host.address}:${host.apiPort}) did not answer: ${errorMessage(e)}`)));
  remote.once('secureConnect', () => {
    remote.setTimeout(0);
    remote.removeAllListeners('error');
    remote.write(upgradeText(req.url ?? '/'));
    // the remote's own answer (101, or its error) reaches the client as it is
    join(socket, remote, head);
  });
  return true;
}

/**
 * The door's side: an upgrade from a pool member (checked by the door, `who`) goes to this xenod's
 * API socket as a forwarded console upgrade; anything else is refused.
 */
export function acceptConsoleUpgrade(unixPath: string, who: string, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  if (String(req.headers.upgrade).toLowerCase() !== 'xeno-console' || !/^\/v1\/domains\/[^/?]+\/console(\?.*)?$/.test(req.url ?? '')) {
    refuseUpgrade(socket, new XenoError('BAD_REQUEST', 'the pool door upgrades consoles only'));
    return;
  }
  const inner = net.connect(unixPath);
  inner.once('error', (e) => refuseUpgrade(socket, new XenoError('INTERNAL', `pool door: ${errorMessage(e)}`)));
  inner.once('connect', () => {
    inner.removeAllListeners('error');
    inner.write(upgradeText(req.url!, who));
    join(socket, inner, head);
  });
}
