/**
 * A guest's VNC display in the browser: the page's noVNC speaks RFB over a WebSocket to xenod,
 * which relays the bytes to the TCP port QEMU listens on (the address QEMU itself reported, kept
 * in the domain's record). The browser never reaches QEMU directly, and the WebSocket is behind
 * the same session check, CSRF token and origin check as every /api route (server.ts). VNC
 * authentication, when the guest has a vncpasswd, stays between noVNC and QEMU.
 */
import net from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { WebSocket } from 'ws';
import { XenoError } from '../../common/errors.js';
import type { DaemonContext } from '../context.js';
import { domParam } from '../routes/schemas.js';
import { refuseUpgrade } from './auth.js';

/** Bytes from QEMU queued towards the browser beyond which we stop reading QEMU. */
const HIGH_WATER = 1024 * 1024;

/** `127.0.0.1:5901` or `[::1]:5901` into connect options. */
export function vncTarget(address: string): { host: string; port: number } {
  const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(address);
  const port = Number(m?.[2]);
  if (!m || net.isIP(m[1]!) === 0 || !(port > 0 && port < 65536)) throw new XenoError('INTERNAL', `unusable VNC address ${JSON.stringify(address)}`);
  return { host: m[1]!, port };
}

export function registerVncRoute(api: FastifyInstance, ctx: DaemonContext): void {
  const displayOf = (dom: string) => {
    const info = ctx.toolstack.info(ctx.toolstack.resolve(dom));
    if (!info.vnc) throw new XenoError('BAD_STATE', `${info.name} has no VNC display (vnc = 1 in its config)`);
    return vncTarget(info.vnc);
  };

  api.get<{ Params: { dom: string } }>(
    '/v1/domains/:dom/vnc/ws',
    {
      websocket: true,
      schema: { summary: "The guest's VNC display as a WebSocket (binary RFB frames both ways; 409 when it has none)", params: domParam },
      // Refused before the upgrade, as a plain HTTP status (a missing domain or display).
      preHandler: async (req, reply) => {
        try {
          displayOf(req.params.dom);
        } catch (e) {
          refuseUpgrade(req.raw.socket, e);
          return reply.hijack();
        }
      },
    },
    (socket: WebSocket, req) => relay(socket, displayOf(req.params.dom), ctx),
  );
}

function relay(socket: WebSocket, target: { host: string; port: number }, ctx: DaemonContext): void {
  const tcp = net.connect(target);
  let queued = 0;
  tcp.on('data', (d: Buffer) => {
    queued += d.length;
    if (queued > HIGH_WATER) tcp.pause();
    socket.send(d, () => {
      queued -= d.length;
      if (queued <= HIGH_WATER && tcp.isPaused()) tcp.resume();
    });
  });
  socket.on('message', (d: Buffer | ArrayBuffer | Buffer[]) => {
    const buf = Buffer.isBuffer(d) ? d : Array.isArray(d) ? Buffer.concat(d) : Buffer.from(d);
    if (!tcp.write(buf)) socket.pause();
  });
  tcp.on('drain', () => socket.resume());
  tcp.on('error', (e) => {
    ctx.log.warn({ target, err: e.message }, 'web console: VNC relay');
    socket.close(1011, 'the VNC display is not reachable');
  });
  tcp.on('close', () => socket.readyState === socket.OPEN && socket.close(1000, 'the VNC display closed'));
  socket.on('error', () => undefined);
  socket.on('close', () => tcp.destroy());
}
