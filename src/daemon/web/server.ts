/**
 * The web console (`xenod --web ADDRESS:PORT`, off by default): a TCP listener beside the API's
 * Unix socket, the only door a browser can reach. It serves the built page (dist/web), the login,
 * and the very same API routes under /api behind the session check (auth.ts), plus the live
 * channels (live.ts) and the VNC relay (vnc.ts).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Fastify, { type FastifyInstance } from 'fastify';
import fastifyStatic from '@fastify/static';
import fastifyWebsocket from '@fastify/websocket';
import { XenoError } from '../../common/errors.js';
import { loadOrMakeToken } from '../../metrics/server.js';
import { installErrorHandler } from '../app.js';
import type { DaemonContext } from '../context.js';
import { registerRoutes } from '../routes/index.js';
import { WebSessions, refuseUpgrade, setSessionCookie, webTokenFile, webUrl } from './auth.js';
import { registerLiveRoutes } from './live.js';
import { registerVncRoute } from './vnc.js';

/** dist/web, beside dist/src (this file is dist/src/daemon/web/server.js once built). */
export const WEB_ASSETS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../web');

export async function startWebServer(ctx: DaemonContext, web: { host: string; port: number }): Promise<FastifyInstance> {
  const sessions = new WebSessions(loadOrMakeToken(webTokenFile(ctx.config), 'web'));
  const app = Fastify({ logger: false, bodyLimit: 4 * 1024 * 1024, ajv: { customOptions: { allowUnionTypes: true } } });
  installErrorHandler(app, ctx);
  await app.register(fastifyWebsocket, { options: { maxPayload: 64 * 1024 } });

  app.post<{ Body: { token?: string } }>('/login', { schema: { body: { type: 'object', properties: { token: { type: 'string' } } } } }, async (req, reply) => {
    const s = sessions.login(req.body?.token ?? '');
    if (!s) {
      ctx.log.warn({ from: req.ip }, 'web console: login with a wrong token');
      throw new XenoError('UNAUTHORIZED', 'wrong token (xeno web-token prints it)');
    }
    setSessionCookie(reply, s.id);
    return { csrf: s.csrf };
  });

  await app.register(
    async (api) => {
      api.addHook('onRequest', async (req, reply) => {
        if (!req.ws) return void sessions.check(req);
        try {
          sessions.check(req);
        } catch (e) {
          // A refused handshake: answered on the socket itself, flushed before it closes (the
          // websocket plugin destroys the socket at once once a reply is sent).
          refuseUpgrade(req.raw.socket, e);
          return reply.hijack();
        }
      });
      api.get('/session', async (req) => ({ csrf: sessions.check(req).csrf }));
      api.post('/logout', async (req, reply) => {
        sessions.logout(sessions.check(req).id);
        setSessionCookie(reply, '', 0);
        return { ok: true };
      });
      registerRoutes(api, ctx, 'web');
      registerLiveRoutes(api, ctx);
      registerVncRoute(api, ctx);
    },
    { prefix: '/api' },
  );

  if (existsSync(WEB_ASSETS)) await app.register(fastifyStatic, { root: WEB_ASSETS, index: 'index.html' });
  else ctx.log.warn(`web console: no built page in ${WEB_ASSETS} (npm run build): only /api is served`);

  await app.listen({ host: web.host, port: web.port });
  ctx.log.info({ url: webUrl(web), tokenFile: webTokenFile(ctx.config) }, 'web console listening');
  return app;
}
