/**
 * POST /v1/pool/hosts/:host/evacuate (xeno host-evacuate): every guest of HOST live-migrated to
 * the other hosts by placement, `parallel` at a time; the answer lists what moved where and what
 * could not, with why. Asked of any host: it is run by HOST itself (through the pool door).
 */
import type { FastifyInstance } from 'fastify';
import { XenoError } from '../../common/errors.js';
import { Migrator } from '../../migration/client.js';
import { planEvacuation, runEvacuation, type EvacuationResult } from '../../pool/ha/evacuate.js';
import type { HostRecord, MemberRecord } from '../../pool/member.js';
import type { PoolService } from '../../pool/service.js';
import type { DaemonContext } from '../context.js';
import { doorJson } from './door.js';

interface EvacuateReq {
  Params: { host: string };
  Body: { parallel?: number } | null;
}

export function registerEvacuateRoute(app: FastifyInstance, ctx: DaemonContext): void {
  const migrator = new Migrator(ctx.toolstack, ctx.config);
  app.post<EvacuateReq>(
    '/v1/pool/hosts/:host/evacuate',
    {
      schema: {
        summary: 'Live-migrate every guest of a host to the others by placement (host-evacuate); lists any that cannot move and why',
        params: { type: 'object', required: ['host'], properties: { host: { type: 'string', pattern: '^[A-Za-z0-9_.-]{1,64}$' } } },
        body: { type: ['object', 'null'], properties: { parallel: { type: 'integer', minimum: 1, maximum: 8, default: 2 } } },
      },
    },
    async (req): Promise<EvacuationResult> => {
      const pool = ctx.services.pool as PoolService | undefined;
      if (!pool) throw new XenoError('BAD_REQUEST', 'host-evacuate: this host is not in a pool');
      const parallel = req.body?.parallel ?? 2;
      const host = req.params.host;
      if (host !== pool.host) {
        const rec = await pool.liveHost(host);
        if (!rec) throw new XenoError('BAD_STATE', `host ${host} is not up in the pool (no live host record)`);
        return doorJson<EvacuationResult>(pool.config.pool!, rec, 'POST', `/v1/pool/hosts/${encodeURIComponent(host)}/evacuate`, { parallel });
      }
      const hosts = await pool.etcd.listJson<HostRecord>('hosts/');
      const members = await pool.etcd.listJson<MemberRecord>('members/');
      for (const [n, h] of hosts) h.disabled = members.get(n)?.disabled ?? h.disabled;
      const guests = ctx.toolstack.list().filter((d) => d.id !== 0).map((d) => ({ name: d.name, maxmem: d.maxmem }));
      const plan = planEvacuation(pool.host, guests, hosts, await pool.running(), await pool.definitions());
      return runEvacuation(plan, parallel, async (m) => {
        const to = hosts.get(m.to)!;
        await migrator.migrate(m.name, { host: to.address, port: to.relocationPort, live: true });
      });
    },
  );
}
