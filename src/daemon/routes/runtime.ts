/** Runtime control routes: mem-set, mem-max, vcpu-list, vcpu-set, vcpu-pin, sched-credit. */
import type { FastifyInstance } from 'fastify';
import { RuntimeHooks } from '../../toolstack/runtime-hooks.js';
import { Runtime } from '../../toolstack/runtime.js';
import type { DaemonContext } from '../context.js';
import { domParam } from './schemas.js';

type DomReq = { Params: { dom: string } };
const numOrString = { type: ['integer', 'string'] } as const;

/**
 * The runtime service: the composition root may register one (`services.runtime`, sharing the
 * RuntimeHooks it gave the toolstack, as `services.runtimeHooks`); otherwise it is made here.
 */
export function runtimeOf(ctx: DaemonContext): Runtime {
  const existing = ctx.services.runtime;
  if (existing instanceof Runtime) return existing;
  const hooks = ctx.services.runtimeHooks instanceof RuntimeHooks ? ctx.services.runtimeHooks : new RuntimeHooks({ config: ctx.config, log: ctx.log });
  const rt = new Runtime(ctx.toolstack, hooks);
  ctx.services.runtime = rt;
  return rt;
}

export function registerRuntimeRoutes(app: FastifyInstance, ctx: DaemonContext): void {
  const rt = runtimeOf(ctx);

  app.post<DomReq & { Body: { memory: number | string; wait?: boolean; timeout?: number } }>(
    '/v1/domains/:dom/mem-set',
    {
      schema: {
        summary: 'Set the balloon target (xm mem-set); waits until the guest reaches it, or reports the gap',
        params: domParam,
        body: {
          type: 'object',
          required: ['memory'],
          properties: {
            memory: { ...numOrString, description: 'MiB, or a size with a b/k/m/g/t suffix' },
            wait: { type: 'boolean', default: true },
            timeout: { type: 'number', minimum: 0, description: 'seconds to wait for the balloon (default 30)' },
          },
        },
      },
    },
    async (req) => rt.memSet(req.params.dom, req.body.memory, { wait: req.body.wait, timeoutMs: req.body.timeout === undefined ? undefined : req.body.timeout * 1000 }),
  );

  app.post<DomReq & { Body: { maxmem: number | string } }>(
    '/v1/domains/:dom/mem-max',
    {
      schema: {
        summary: 'Set the maximum memory (xm mem-max); above what QEMU started with, it takes effect at the next boot',
        params: domParam,
        body: { type: 'object', required: ['maxmem'], properties: { maxmem: { ...numOrString, description: 'MiB, or a size with a suffix' } } },
      },
    },
    async (req) => rt.memMax(req.params.dom, req.body.maxmem),
  );

  app.get<{ Querystring: { dom?: string } }>(
    '/v1/vcpus',
    { schema: { summary: 'Vcpus of every domain, or of one (xm vcpu-list)', querystring: { type: 'object', properties: { dom: { type: 'string' } } } } },
    async (req) => ({ vcpus: await rt.vcpuList(req.query.dom) }),
  );

  app.get<DomReq>('/v1/domains/:dom/vcpus', { schema: { summary: "A domain's vcpus (xm vcpu-list DOM)", params: domParam } }, async (req) => ({
    vcpus: await rt.vcpuList(req.params.dom),
  }));

  app.post<DomReq & { Body: { vcpus: number | string; timeout?: number } }>(
    '/v1/domains/:dom/vcpu-set',
    {
      schema: {
        summary: 'Hot-plug or unplug vcpus up to maxvcpus (xm vcpu-set); an unplug waits for the guest (DEVICE_DELETED)',
        params: domParam,
        body: {
          type: 'object',
          required: ['vcpus'],
          properties: { vcpus: numOrString, timeout: { type: 'number', minimum: 0, description: 'seconds to wait for an unplug (default 30)' } },
        },
      },
    },
    async (req) => rt.vcpuSet(req.params.dom, req.body.vcpus, { timeoutMs: req.body.timeout === undefined ? undefined : req.body.timeout * 1000 }),
  );

  app.post<DomReq & { Body: { vcpu: number | string; cpus: number | string } }>(
    '/v1/domains/:dom/vcpu-pin',
    {
      schema: {
        summary: 'Pin a vcpu (or all) to host CPUs (xm vcpu-pin)',
        params: domParam,
        body: {
          type: 'object',
          required: ['vcpu', 'cpus'],
          properties: { vcpu: { ...numOrString, description: 'vcpu index or "all"' }, cpus: { ...numOrString, description: '"all" or a list like 0-3,5,^1' } },
        },
      },
    },
    async (req) => ({ vcpus: await rt.vcpuPin(req.params.dom, req.body.vcpu, req.body.cpus) }),
  );

  app.get<{ Querystring: { dom?: string } }>(
    '/v1/sched-credit',
    { schema: { summary: 'Credit scheduler weight and cap of each domain (xm sched-credit)', querystring: { type: 'object', properties: { dom: { type: 'string' } } } } },
    async (req) => ({ domains: rt.schedCredit(req.query.dom) }),
  );

  app.post<DomReq & { Body: { weight?: number | string; cap?: number | string } }>(
    '/v1/domains/:dom/sched-credit',
    {
      schema: {
        summary: 'Set the weight (1-65535, default 256) and/or cap (% of one CPU, 0 = none) on the domain cgroup (xm sched-credit -d)',
        params: domParam,
        body: { type: 'object', properties: { weight: numOrString, cap: numOrString } },
      },
    },
    async (req) => rt.setSchedCredit(req.params.dom, req.body),
  );
}
