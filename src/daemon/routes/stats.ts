/** GET /v1/stats: the sampler's history (xeno top, the web console). */
import type { FastifyInstance } from 'fastify';
import type { Sampler } from '../../metrics/sampler.js';
import { statsQuery, type StatsQuery } from '../../metrics/stats-query.js';
import type { DaemonContext } from '../context.js';

const num = { type: 'number' } as const;
const numOrNull = { type: ['number', 'null'] } as const;
const counters = (names: string[], key: string) => ({
  type: 'array',
  items: { type: 'object', properties: { [key]: { type: 'string' }, ...Object.fromEntries(names.map((n) => [n, num])) } },
});

const statsResponse = {
  type: 'object',
  properties: {
    step: num,
    host: {
      type: 'object',
      properties: { samples: { type: 'array', items: { type: 'object', properties: { t: num, cpuPct: numOrNull, freeMem: num, totalMem: num } } } },
    },
    domains: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          id: { type: 'integer' },
          name: { type: 'string' },
          uuid: { type: 'string' },
          type: { type: 'string' },
          samples: {
            type: 'array',
            items: {
              type: 'object',
              properties: {
                t: num, state: { type: 'string' }, flags: { type: 'string' }, cpuSec: num, cpuPct: numOrNull,
                memTarget: num, memActual: numOrNull, maxmem: num, vcpus: { type: 'integer' },
                nets: counters(['rxBytes', 'txBytes', 'rxPackets', 'txPackets'], 'vif'),
                vbds: counters(['rdBytes', 'wrBytes', 'rdReqs', 'wrReqs'], 'vdev'),
              },
            },
          },
        },
      },
    },
    events: {
      type: 'array',
      items: {
        type: 'object',
        properties: { seq: { type: 'integer' }, ts: num, domid: { type: ['integer', 'null'] }, name: { type: ['string', 'null'] }, kind: { type: 'string' }, message: { type: 'string' } },
      },
    },
  },
} as const;

export function registerStatsRoutes(app: FastifyInstance, ctx: DaemonContext): void {
  app.get<{ Querystring: StatsQuery }>(
    '/v1/stats',
    {
      schema: {
        summary: 'Sampled statistics of the host and the domains, with the lifecycle events of the window (xeno top)',
        description:
          'Memory in bytes; cpuPct in percent of one host CPU; network counted from the guest side. Samples every second for the last 15 minutes, every minute for 24 hours.',
        querystring: {
          type: 'object',
          properties: {
            dom: { type: 'string', description: 'domain name or id (default: all, Domain-0 included)' },
            since: { type: 'number', description: 'seconds since the epoch; negative: seconds back from now (default -60)' },
            step: { type: 'number', minimum: 0, description: 'seconds between samples (default: as stored)' },
          },
        },
        response: { 200: statsResponse },
      },
    },
    async (req) => statsQuery(ctx.services.sampler as Sampler, ctx.toolstack, req.query),
  );
}
