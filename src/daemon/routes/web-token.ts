/**
 * GET /v1/web-token (`xeno web-token`): the web console's login token and address. Only on the
 * API socket (root's door): the web console's own copy of the routes leaves it out.
 */
import type { FastifyInstance } from 'fastify';
import { XenoError } from '../../common/errors.js';
import type { DaemonContext } from '../context.js';
import { loadOrMakeToken } from '../../metrics/server.js';
import { webTokenFile, webUrl } from '../web/auth.js';

export function registerWebTokenRoute(app: FastifyInstance, ctx: DaemonContext): void {
  app.get('/v1/web-token', { schema: { summary: "The web console's login token and URL (xeno web-token)" } }, async () => {
    const web = ctx.config.web;
    if (!web) throw new XenoError('BAD_STATE', 'this xenod has no web console (xenod --web ADDRESS:PORT or (xeno-web ADDRESS:PORT))');
    return { token: loadOrMakeToken(webTokenFile(ctx.config), 'web'), url: webUrl(web) };
  });
}
