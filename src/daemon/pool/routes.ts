/**
 * The pool's routes (/v1/pool/...): host-list, host-disable/enable, pool-eject, list --pool, and
 * the start of a pool guest here (what another host's placement asks through the door). On a
 * pooled host the managed-guest routes (xeno new / start / delete / list --all) act on the pool's
 * definitions in etcd instead of the host's own; a standalone host keeps them exactly as before.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { errorMessage, XenoError } from '../../common/errors.js';
import { applyOverrides, parseXlCfg } from '../../config/index.js';
import { poolKeysOf } from '../../config/pool-keys.js';
import type { CreateRequest, DomainInfo } from '../../model/api.js';
import type { PoolDefinition } from '../../pool/placement.js';
import type { PoolService } from '../../pool/service.js';
import type { DaemonContext } from '../context.js';
import { configFromRequest } from '../routes/domains.js';
import { doorJson } from './door.js';
import { installForwarding } from './forward.js';

type HostReq = { Params: { host: string } };
type NameReq = { Params: { name: string } };
const hostParam = { type: 'object', required: ['host'], properties: { host: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{0,62}$' } } } as const;
const nameParam = { type: 'object', required: ['name'], properties: { name: { type: 'string', minLength: 1, maxLength: 64 } } } as const;

export interface PoolDomainRow extends Partial<Omit<DomainInfo, 'state'>> {
  name: string;
  state: string;
  host: string | null;
}

function poolOf(ctx: DaemonContext): PoolService {
  const p = ctx.services.pool as PoolService | undefined;
  if (!p) throw new XenoError('BAD_REQUEST', 'this host is not in a pool (its xend-config.sxp has no xeno-pool-* keys)');
  return p;
}

/** Starts a pool guest on this host from its definition (the running/ claim first). */
export async function startHere(ctx: DaemonContext, pool: PoolService, def: PoolDefinition, paused: boolean): Promise<{ domain: DomainInfo; host: string; warnings: string[] }> {
  const me = pool.member.members.get(pool.host);
  if (me?.disabled) throw new XenoError('BAD_STATE', `host ${pool.host} is disabled: no new guests start on it`);
  const warnings: string[] = [];
  const config = configFromRequest({ cfgText: def.cfgText, cfgFile: def.cfgFile, overrides: def.overrides, cwd: def.cwd }, warnings);
  const model = pool.cpuModelFor();
  if (model) config.cpuModel = model;
  const rec = await pool.startHere(def.name, () => ctx.toolstack.create(config, { paused }), ctx.toolstack.validateConfig(config));
  return { domain: ctx.toolstack.info(rec), host: pool.host, warnings };
}

export function registerPoolRoutes(app: FastifyInstance, ctx: DaemonContext): void {
  const ts = ctx.toolstack;
  const pool = ctx.services.pool as PoolService | undefined;
  if (pool) {
    installForwarding(app, ts, pool);
    installDefinitionHooks(app, ctx, pool);
  } else {
    app.addHook('preHandler', async (req) => {
      if (req.routeOptions.url === '/v1/definitions/:name/start' && (req.query as { on?: string }).on) throw new XenoError('BAD_REQUEST', 'start --on: this host is not in a pool');
    });
  }

  app.get('/v1/pool/hosts', { schema: { summary: 'The hosts of the pool: state, free memory, cpus, accelerator, guests, lease age; the pool CPU model' } }, async () => poolOf(ctx).hostRows());

  for (const [verb, disabled] of [['disable', true], ['enable', false]] as const) {
    app.post<HostReq>(`/v1/pool/hosts/:host/${verb}`, { schema: { summary: `${verb === 'disable' ? 'No new placements on' : 'Placements again on'} a host of the pool`, params: hostParam } }, async (req) => ({
      member: await poolOf(ctx).setDisabled(req.params.host, disabled),
    }));
  }

  app.delete<HostReq>('/v1/pool/hosts/:host', { schema: { summary: 'Eject a host from the pool (refused while it runs guests)', params: hostParam } }, async (req) => {
    await poolOf(ctx).eject(req.params.host);
    return { ok: true };
  });

  app.get('/v1/pool/domains', { schema: { summary: 'Every guest of the pool with its host (running ones from each host, defined ones that are off)' } }, async () => {
    const p = poolOf(ctx);
    const rows: PoolDomainRow[] = [];
    const errors: Array<{ host: string; message: string }> = [];
    const { hosts } = await p.hostRows();
    await Promise.all(hosts.filter((h) => h.state !== 'down').map(async (h) => {
      try {
        const doms = h.name === p.host ? ts.list() : (await doorJson<{ domains: DomainInfo[] }>(p.config.pool!, h, 'GET', '/v1/domains')).domains;
        for (const d of doms) if (d.id !== 0) rows.push({ ...d, host: h.name });
      } catch (e) {
        errors.push({ host: h.name, message: errorMessage(e) });
      }
    }));
    const running = new Set(rows.map((r) => r.name));
    for (const [name, d] of await p.definitions()) if (!running.has(name)) rows.push({ name, state: 'off', host: null, maxmem: d.maxmem });
    rows.sort((a, b) => (a.host ?? '~').localeCompare(b.host ?? '~') || a.name.localeCompare(b.name));
    return { domains: rows, errors };
  });

  app.post<NameReq & { Body: { paused?: boolean } | undefined }>(
    '/v1/pool/guests/:name/start-here',
    { schema: { summary: 'Start a pool guest on this host (the placement of another host asks this through the pool door)', params: nameParam, body: { type: ['object', 'null'], properties: { paused: { type: 'boolean' } } } } },
    async (req) => {
      const p = poolOf(ctx);
      return startHere(ctx, p, await p.definition(req.params.name), req.body?.paused ?? false);
    },
  );
}

/** On a pooled host, xeno new / start / delete / list --all mean the pool's definitions. */
function installDefinitionHooks(app: FastifyInstance, ctx: DaemonContext, pool: PoolService): void {
  const handlers: Record<string, (req: FastifyRequest, reply: FastifyReply) => Promise<unknown>> = {
    'POST /v1/definitions': async (req, reply) => {
      const body = req.body as CreateRequest & { fromDomain?: string };
      if (body.fromDomain !== undefined || body.cfgText === undefined) throw new XenoError('BAD_REQUEST', 'in a pool, xeno new takes a config file (its paths must be the same on every host)');
      const warnings: string[] = [];
      const config = ctx.toolstack.validateConfig(configFromRequest(body, warnings));
      let ast = parseXlCfg(body.cfgText, body.cfgFile ?? '<request>');
      if (body.overrides?.length) ast = applyOverrides(ast, body.overrides);
      const k = poolKeysOf(ast);
      const def = await pool.define({ name: config.name, cfgText: body.cfgText, cfgFile: body.cfgFile, cwd: body.cwd, overrides: body.overrides, maxmem: config.maxmem, ...k }, config);
      void reply.status(201);
      return { definition: { name: def.name, autostart: false, pool: true, definedOn: def.definedOn, antiAffinity: def.antiAffinity }, warnings };
    },
    'GET /v1/definitions': async () => {
      const running = await pool.running();
      const defs = [...(await pool.definitions()).values()];
      const off = defs.filter((d) => !running.has(d.name)).map((d) => ({ id: null, name: d.name, uuid: null, state: 'off', stateFlags: '------', memory: d.maxmem, maxmem: d.maxmem, vcpus: 0, maxvcpus: 0, cpuTime: 0, autostart: false }));
      return { definitions: defs, off };
    },
    'POST /v1/definitions/:name/start': async (req) => {
      const name = (req.params as { name: string }).name;
      const on = (req.query as { on?: string }).on || undefined;
      const paused = (req.body as { paused?: boolean } | null)?.paused ?? false;
      const { def, host } = await pool.placeOf(name, on);
      if (host.name === pool.host) return startHere(ctx, pool, def, paused);
      return doorJson(pool.config.pool!, host, 'POST', `/v1/pool/guests/${encodeURIComponent(name)}/start-here`, { paused });
    },
    'DELETE /v1/definitions/:name': async (req) => {
      await pool.undefine((req.params as { name: string }).name);
      return { ok: true };
    },
  };
  app.addHook('preHandler', async (req, reply) => {
    const h = handlers[`${req.method} ${req.routeOptions.url ?? ''}`];
    if (!h) return;
    const out = await h(req, reply);
    return reply.send(out);
  });
}
