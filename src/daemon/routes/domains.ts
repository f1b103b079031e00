/** Domain lifecycle routes: list, create, shutdown, reboot, destroy, pause, config. */
import type { FastifyInstance } from 'fastify';
import { XenoError } from '../../common/errors.js';
import { applyOverrides, formatXlCfg, parseXlCfg, toDomainConfig } from '../../config/index.js';
import type { CreateRequest, CreateResponse } from '../../model/api.js';
import type { DomainConfig } from '../../model/domain-config.js';
import type { Toolstack } from '../../toolstack/toolstack.js';
import type { DaemonContext } from '../context.js';
import { domainInfo, domParam, okResponse } from './schemas.js';

type DomReq = { Params: { dom: string } };

/** The domain config a create request means: parsed here so errors carry file:line:col. */
export function configFromRequest(body: CreateRequest, warnings: string[]): DomainConfig {
  if (body.cfgText !== undefined) {
    const file = body.cfgFile ?? '<request>';
    let ast = parseXlCfg(body.cfgText, file);
    if (body.overrides?.length) ast = applyOverrides(ast, body.overrides);
    return toDomainConfig(ast, file, (w) => warnings.push(w), { baseDir: body.cwd });
  }
  if (body.config) return body.config;
  throw new XenoError('BAD_REQUEST', 'a create request needs cfgText or config');
}

/**
 * The one validator (the toolstack runs it again in create), here so that a refusal names where the
 * config came from: `bad.cfg: memory: ...`, `config: disks[0].vdev: ...`.
 */
function validated(ts: Toolstack, config: unknown, from: string): DomainConfig {
  try {
    return ts.validateConfig(config);
  } catch (e) {
    if (e instanceof XenoError) throw new XenoError(e.code, `${from}: ${e.message}`, e.details);
    throw e;
  }
}

export function registerDomainRoutes(app: FastifyInstance, ctx: DaemonContext): void {
  const ts = ctx.toolstack;

  app.get('/v1/domains', { schema: { summary: 'All domains, Domain-0 first (xm list)', response: { 200: { type: 'object', properties: { domains: { type: 'array', items: domainInfo } } } } } }, async () => ({
    domains: ts.list(),
  }));

  app.get<DomReq>('/v1/domains/:dom', { schema: { summary: "One domain's full state (xm list -l)", params: domParam } }, async (req) => {
    if (req.params.dom === '0' || req.params.dom === 'Domain-0') return ts.domain0();
    return ts.detail(ts.resolve(req.params.dom));
  });

  app.post<{ Body: CreateRequest }>(
    '/v1/domains',
    {
      schema: {
        summary: 'Create and start a domain (xm create)',
        body: {
          type: 'object',
          properties: {
            cfgText: { type: 'string' },
            cfgFile: { type: 'string' },
            overrides: { type: 'array', items: { type: 'string' } },
            cwd: { type: 'string' },
            config: { type: 'object', additionalProperties: true },
            paused: { type: 'boolean' },
            dryRun: { type: 'boolean' },
          },
        },
      },
    },
    async (req, reply): Promise<CreateResponse> => {
      const t0 = performance.now();
      const warnings: string[] = [];
      const config = validated(ts, configFromRequest(req.body, warnings), req.body.cfgText !== undefined ? (req.body.cfgFile ?? '<request>') : 'config');
      if (req.body.dryRun) return { config: ts.validateForCreate(config), warnings };
      const rec = await ts.create(config, { paused: req.body.paused });
      const done = performance.now();
      if (rec.accel === 'tcg') warnings.push(`warning: no usable KVM on this host: ${rec.name} runs under TCG emulation (slow); see xeno info`);
      void reply.status(201);
      const spawned = ts.spawnedAt(rec.id) ?? done;
      return { config: rec.config, warnings, domain: ts.info(rec), timings: { requestToSpawnMs: spawned - t0, requestToDoneMs: done - t0 } };
    },
  );

  app.get<DomReq>('/v1/domains/:dom/config', { schema: { summary: "A domain's stored config, as JSON and in xl.cfg syntax", params: domParam } }, async (req) => {
    const rec = ts.resolve(req.params.dom);
    return { config: rec.config, xlcfg: formatXlCfg(rec.config) };
  });

  app.post<DomReq & { Body: { wait?: boolean; timeout?: number } | undefined }>(
    '/v1/domains/:dom/shutdown',
    { schema: { summary: 'ACPI shutdown; with wait, returns once it is gone', params: domParam, body: { type: ['object', 'null'], properties: { wait: { type: 'boolean' }, timeout: { type: 'number' } } }, response: { 200: okResponse } } },
    async (req) => {
      await ts.shutdown(req.params.dom, req.body?.wait ?? false, (req.body?.timeout ?? 120) * 1000);
      return { ok: true };
    },
  );

  const simple: Array<[string, string, (dom: string) => Promise<void>]> = [
    ['reboot', 'Clean reboot: ACPI shutdown, then restarted by xenod', (d) => ts.reboot(d)],
    ['destroy', 'Kill the domain now; returns once QEMU has exited', (d) => ts.destroy(d)],
    ['pause', 'Stop the vcpus (memory kept)', (d) => ts.pause(d)],
    ['unpause', 'Resume the vcpus', (d) => ts.unpause(d)],
  ];
  for (const [op, summary, fn] of simple) {
    app.post<DomReq>(`/v1/domains/:dom/${op}`, { schema: { summary, params: domParam, response: { 200: okResponse } } }, async (req) => {
      await fn(req.params.dom);
      return { ok: true };
    });
  }
}
