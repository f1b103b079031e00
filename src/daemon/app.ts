/**
 * The HTTP+JSON API, built apart from its listener so tests can drive it in-process. Errors are
 * mapped to HTTP in one place (the catalogue in common/errors.ts).
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { ERROR_CATALOGUE, XenoError } from '../common/errors.js';
import { XENO_VERSION } from '../common/version.js';
import type { DaemonContext } from './context.js';
import type { MetricsExporter } from '../metrics/exporter.js';
import { registerOperationMetrics } from './operation-metrics.js';
import { registerRoutes } from './routes/index.js';
import { registerWebTokenRoute } from './routes/web-token.js';

/** `openapi`: collect the route schemas into an OpenAPI document (docs generation only: it costs memory). */
export async function buildApp(ctx: DaemonContext, opts: { openapi?: boolean } = {}): Promise<FastifyInstance> {
  // pluginTimeout 0: the start-up hook restores every managed save, which on a loaded TCG host takes
  // longer than fastify's default 10 s (xenod then exited); each restore has its own bounds.
  const app = Fastify({ logger: false, pluginTimeout: 0, bodyLimit: 4 * 1024 * 1024, ajv: { customOptions: { allowUnionTypes: true } } });
  if (opts.openapi) {
    const { default: swagger } = await import('@fastify/swagger');
    await app.register(swagger, {
      openapi: {
        info: { title: 'xenod API', version: XENO_VERSION, description: 'The xeno daemon (the xend of xeno), on a Unix socket.' },
      },
    });
  }
  installErrorHandler(app, ctx);
  const exporter = ctx.services.exporter as MetricsExporter | undefined;
  if (exporter) registerOperationMetrics(app, exporter);
  registerRoutes(app, ctx);
  registerWebTokenRoute(app, ctx);
  return app;
}

/** XenoError -> its HTTP status, validation errors -> 400, anything else -> 500 (logged). */
export function installErrorHandler(app: FastifyInstance, ctx: DaemonContext): void {
  app.setErrorHandler((err: unknown, req, reply) => {
    if (err instanceof XenoError) {
      void reply.status(err.status).send({ error: { code: err.code, message: err.message, details: err.details } });
      return;
    }
    const e = err as { validation?: unknown; statusCode?: number; message?: string };
    if (e.validation || (e.statusCode && e.statusCode < 500)) {
      void reply.status(e.statusCode ?? 400).send({ error: { code: 'BAD_REQUEST', message: e.message ?? 'bad request' } });
      return;
    }
    ctx.log.error({ err, url: req.url }, 'internal error');
    void reply.status(500).send({ error: { code: 'INTERNAL', message: e.message ?? String(err) } });
  });
}

/** The error catalogue, for the API documentation. */
export const errorCodes = Object.entries(ERROR_CATALOGUE).map(([code, v]) => ({ code, status: v.status, doc: v.doc }));
