/**
 * Counts and times the long domain operations (create, save, restore, migrate) at the API door,
 * for /metrics. A streamed answer (NDJSON progress) always has status 200: its outcome is its
 * last line, `{"event":"result"...}` or `{"event":"error"...}`.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { MetricsExporter } from '../metrics/exporter.js';

const OPS: Record<string, string> = {
  'POST /v1/domains': 'create',
  'POST /v1/domains/:dom/save': 'save',
  'POST /v1/restore': 'restore',
  'POST /v1/domains/:dom/migrate': 'migrate',
};

function opOf(req: FastifyRequest): string | undefined {
  const op = OPS[`${req.method} ${req.routeOptions.url ?? ''}`];
  if (op === 'create' && (req.body as { dryRun?: boolean } | undefined)?.dryRun) return undefined;
  return op;
}

export function registerOperationMetrics(app: FastifyInstance, exporter: MetricsExporter): void {
  const started = new WeakMap<FastifyRequest, number>();
  const done = new WeakSet<FastifyRequest>();
  const finish = (req: FastifyRequest, op: string, ok: boolean) => {
    if (done.has(req)) return;
    done.add(req);
    exporter.observe(op, ok, (performance.now() - (started.get(req) ?? performance.now())) / 1000);
  };
  app.addHook('onRequest', async (req, reply) => {
    if (!OPS[`${req.method} ${req.routeOptions.url ?? ''}`]) return;
    started.set(req, performance.now());
    const raw = reply.raw;
    const write = raw.write.bind(raw) as (chunk: unknown, ...rest: unknown[]) => boolean;
    raw.write = ((chunk: unknown, ...rest: unknown[]) => {
      const op = opOf(req);
      const text = typeof chunk === 'string' ? chunk : Buffer.isBuffer(chunk) ? chunk.toString('utf8', 0, 24) : '';
      if (op && text.startsWith('{"event":"result"')) finish(req, op, true);
      else if (op && text.startsWith('{"event":"error"')) finish(req, op, false);
      return write(chunk, ...rest);
    }) as typeof raw.write;
  });
  app.addHook('onResponse', async (req, reply) => {
    const op = opOf(req);
    if (op && !reply.raw.getHeader('content-type')?.toString().includes('ndjson')) finish(req, op, reply.statusCode < 400);
  });
}
