/**
 * Any host's CLI acts on any guest of the pool: a request about a domain this xenod does not run,
 * which etcd's running/<name> places on another live host, is passed to that host's pool door as
 * it came (method, path, body) and its answer streamed back (NDJSON progress included). A request
 * that came through a door is never forwarded again; domain ids are per host and stay local.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { XenoError } from '../../common/errors.js';
import { keys } from '../../pool/etcd.js';
import type { RunningRecord } from '../../pool/member.js';
import type { PoolService } from '../../pool/service.js';
import type { Toolstack } from '../../toolstack/toolstack.js';
import { doorRequest, FORWARDED_HEADER } from './door.js';

function isLocal(ts: Toolstack, dom: string): boolean {
  try {
    ts.resolve(dom);
    return true;
  } catch {
    return false;
  }
}

function domainOf(req: FastifyRequest): string | null {
  const url = req.routeOptions.url ?? '';
  if (!url.startsWith('/v1/domains/:dom')) return null;
  const dom = (req.params as { dom?: string }).dom;
  if (!dom || /^\d+$/.test(dom) || dom === 'Domain-0') return null;
  return dom;
}

/** `xeno migrate DOM HOST` in a pool: HOST may be a pool host's name (its address and relocation port). */
async function poolMigrationTarget(req: FastifyRequest, pool: PoolService): Promise<void> {
  if (req.routeOptions.url !== '/v1/domains/:dom/migrate') return;
  const body = req.body as { host?: string; port?: number } | undefined;
  if (!body?.host || !/^[a-z0-9][a-z0-9-]{0,62}$/.test(body.host)) return;
  const h = await pool.liveHost(body.host);
  if (!h) return;
  body.host = h.address;
  body.port ??= h.relocationPort;
}

export function installForwarding(app: FastifyInstance, ts: Toolstack, pool: PoolService): void {
  app.addHook('preHandler', async (req, reply) => {
    await poolMigrationTarget(req, pool);
    if (req.headers[FORWARDED_HEADER]) return;
    const dom = domainOf(req);
    if (!dom || isLocal(ts, dom)) return;
    const run = await pool.etcd.getJson<RunningRecord>(keys.running(dom));
    if (!run || run.host === pool.host) return; // the route answers: no such domain
    const host = await pool.liveHost(run.host);
    if (!host) throw new XenoError('HOST_ERROR', `${dom} runs on ${run.host}, which is not up in the pool`);
    const body = req.body === undefined || req.body === null ? undefined : JSON.stringify(req.body);
    const res = await doorRequest(pool.config.pool!, host, req.method, req.url, body);
    void reply.code(res.statusCode ?? 502);
    const type = res.headers['content-type'];
    if (type) void reply.header('content-type', type);
    return reply.send(res);
  });

  // A guest started, stopped or gone: running/ follows at once, not at the next refresh.
  app.addHook('onSend', async (req, _reply, payload) => {
    if (req.method !== 'GET' && (req.routeOptions.url ?? '').startsWith('/v1/domains')) await pool.member.refresh();
    return payload;
  });
}
