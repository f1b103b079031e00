/**
 * The web console's live channels: the event log pushed as Server-Sent Events, and a guest's serial
 * console over a WebSocket on the same console hub as `xeno console` (what one types, both see;
 * the hub's log is sent first, so a page opened after boot shows the boot).
 */
import type { FastifyInstance } from 'fastify';
import type { WebSocket } from 'ws';
import type { ConsoleSink } from '../../toolstack/console-hub.js';
import type { DaemonContext } from '../context.js';
import { domParam } from '../routes/schemas.js';

/** Seconds between SSE comments that keep idle proxies and the browser's connection alive. */
const KEEPALIVE_MS = 25_000;

export function registerLiveRoutes(api: FastifyInstance, ctx: DaemonContext): void {
  const feed = ctx.toolstack.eventFeed;
  feed.setMaxListeners(0);

  api.get('/events/stream', { schema: { summary: 'Lifecycle events as they happen (text/event-stream)' } }, async (req, reply) => {
    void reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    raw.write('retry: 3000\n: xeno events\n\n');
    const send = (e: unknown) => void raw.write(`event: domain\ndata: ${JSON.stringify(e)}\n\n`);
    feed.on('event', send);
    const keepalive = setInterval(() => raw.write(': keepalive\n\n'), KEEPALIVE_MS);
    req.raw.on('close', () => {
      clearInterval(keepalive);
      feed.off('event', send);
    });
  });

  api.get<{ Params: { dom: string } }>(
    '/v1/domains/:dom/console/ws',
    { websocket: true, schema: { summary: "The guest's serial console as a WebSocket (binary frames both ways), its log first", params: domParam } },
    (socket: WebSocket, req) => {
      let hub;
      try {
        hub = ctx.toolstack.console((req.params as { dom: string }).dom);
      } catch (e) {
        socket.close(4004, (e as Error).message.slice(0, 120));
        return;
      }
      const history = hub.history();
      if (history.length) socket.send(history);
      const detach = hub.attach(wsSink(socket), history.length);
      const onClose = () => socket.close(1000, 'the console closed');
      hub.once('close', onClose);
      socket.on('message', (d: Buffer | string) => hub.input(Buffer.isBuffer(d) ? d : Buffer.from(String(d))));
      socket.on('error', () => undefined);
      socket.on('close', () => {
        detach();
        hub.off('close', onClose);
      });
    },
  );
}

function wsSink(socket: WebSocket): ConsoleSink {
  return {
    write: (d) => socket.send(d),
    get writableLength() {
      return socket.bufferedAmount;
    },
    drop: (message) => {
      socket.send(message);
      socket.close(1013, 'console client dropped');
      setTimeout(() => socket.terminate(), 2000).unref();
    },
  };
}
