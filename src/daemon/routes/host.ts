/** Host-level routes: `xeno info`, `xeno log`, `xeno dmesg`. */
import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import type { DaemonContext } from '../context.js';

export function registerHostRoutes(app: FastifyInstance, ctx: DaemonContext): void {
  app.get('/v1/host', { schema: { summary: 'Host information (xm info)' } }, async () => ctx.toolstack.hostInfo());

  app.get<{ Querystring: { lines?: number } }>(
    '/v1/log',
    { schema: { summary: "The daemon's log (xm log)", querystring: { type: 'object', properties: { lines: { type: 'integer', minimum: 1, default: 200 } } } } },
    async (req) => {
      let text = '';
      try {
        text = readFileSync(ctx.logFile, 'utf8');
      } catch {
        /* no log yet */
      }
      const lines = text.split('\n').filter(Boolean);
      return { lines: lines.slice(-(req.query.lines ?? 200)) };
    },
  );

  app.get<{ Querystring: { limit?: number } }>(
    '/v1/events',
    { schema: { summary: 'Domain lifecycle events (xm dmesg)', querystring: { type: 'object', properties: { limit: { type: 'integer', minimum: 1, default: 200 } } } } },
    async (req) => ({ events: ctx.toolstack.deps.store.events(req.query.limit ?? 200) }),
  );
}
