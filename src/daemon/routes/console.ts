/**
 * Guest consoles. `GET /v1/domains/:dom/console` upgraded to the raw `xeno-console` protocol gives a
 * two-way byte stream on the guest's serial line; any number of clients at once. Without the upgrade
 * it returns the bounded console log. A client that stops reading is dropped (console-hub.ts), so
 * it never holds the daemon's memory.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import type { ConsoleSink } from '../../toolstack/console-hub.js';
import type { DaemonContext } from '../context.js';
import { domParam } from './schemas.js';
import { forwardConsoleUpgrade } from '../pool/console-forward.js';
import { refuseUpgrade } from '../refuse-upgrade.js';
import type { PoolService } from '../../pool/service.js';

const CONSOLE_RE = /^\/v1\/domains\/([^/?]+)\/console(\?.*)?$/;

export function registerConsoleRoutes(app: FastifyInstance, ctx: DaemonContext, door: 'unix' | 'web' = 'unix'): void {
  app.get<{ Params: { dom: string } }>(
    '/v1/domains/:dom/console',
    { schema: { summary: "The guest's console log; with `Upgrade: xeno-console`, a live two-way stream", params: domParam } },
    async (req, reply) => {
      const rec = ctx.toolstack.resolve(req.params.dom);
      void reply.type('text/plain');
      return ctx.toolstack.liveOf(rec).console.history();
    },
  );

  if (door === 'web') return; // the web console has its own WebSocket route (daemon/web/console-ws.ts)
  app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => void upgradeConsole(ctx, req, socket, head));
}

async function upgradeConsole(ctx: DaemonContext, req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
  const m = CONSOLE_RE.exec(req.url ?? '');
  if (!m || String(req.headers.upgrade).toLowerCase() !== 'xeno-console') {
    socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    return;
  }
  const name = decodeURIComponent(m[1]!);
  let hub;
  try {
    hub = ctx.toolstack.console(name);
  } catch (e) {
    // a pool guest of another host: its console through that host's door
    const pool = ctx.services.pool as PoolService | undefined;
    if (pool && !/^\d+$/.test(name) && (await forwardConsoleUpgrade(pool, name, req, socket, head).catch(() => false))) return;
    refuseUpgrade(socket, e);
    return;
  }
  socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: xeno-console\r\nConnection: Upgrade\r\n\r\n');
  const history = new URLSearchParams(m[2]?.slice(1) ?? '').get('history') === '1' ? hub.history() : Buffer.alloc(0);
  if (history.length) socket.write(history);
  if (head.length) hub.input(head);
  const detach = hub.attach(socketSink(socket), history.length);
  const onClose = () => socket.end();
  hub.once('close', onClose);
  socket.on('data', (d: Buffer) => hub.input(d));
  socket.on('error', () => undefined);
  socket.on('close', () => {
    detach();
    hub.off('close', onClose);
  });
}

/** A client connection as the hub sees it; a dropped client gets a short grace to read the goodbye. */
function socketSink(socket: Duplex): ConsoleSink {
  return {
    write: (d) => void socket.write(d),
    get writableLength() {
      return socket.writableLength;
    },
    drop: (message) => {
      socket.end(message);
      setTimeout(() => socket.destroy(), 2000).unref();
    },
  };
}
