/**
 * POST /v1/domains/:dom/migrate (xm migrate): move a running or paused domain to another host's
 * xenod (its relocation server), live or offline; answers once the guest runs there, with QEMU's
 * figures (total time, downtime, bytes sent), or with `progress` as NDJSON lines while it goes
 * (streamed.ts). Protocol and failure rules: src/migration/protocol.ts.
 */
import type { FastifyInstance } from 'fastify';
import { Migrator, type MigrateProgress, type MigrateRequest } from '../../migration/client.js';
import type { DaemonContext } from '../context.js';
import { domParam } from './schemas.js';
import { streamed } from './streamed.js';

export function registerMigrationRoutes(app: FastifyInstance, ctx: DaemonContext): void {
  const migrator = new Migrator(ctx.toolstack, ctx.config);
  app.post<{ Params: { dom: string }; Body: MigrateRequest & { progress?: boolean } }>(
    '/v1/domains/:dom/migrate',
    {
      schema: {
        summary: "Migrate a domain to another host's xenod (xm migrate); live keeps it running during the copy",
        params: domParam,
        body: {
          type: 'object',
          required: ['host'],
          properties: {
            host: { type: 'string', minLength: 1, description: "the target host (its xenod's relocation server)" },
            port: { type: 'integer', minimum: 1, maximum: 65535, default: 8002, description: 'its xend-relocation-port' },
            live: { type: 'boolean', default: false, description: 'live migration (xm migrate -l); otherwise the guest is paused during the copy' },
            progress: { type: 'boolean', default: false, description: 'answer with NDJSON lines: {"event":"progress",status,transferred,remaining,total} (bytes: RAM, or with status mirroring the --copy-storage disks while they are mirrored), then the result or the error' },
            copyStorage: { type: 'boolean', default: false, description: 'no shared storage: the target creates the writable disks and the source mirrors them over NBD (TLS-PSK) before the RAM moves' },
            force: { type: 'boolean', default: false, description: 'migrate even with read-write disks whose cache mode is unsafe on shared storage (not none/directsync)' },
            postcopy: { type: 'boolean', default: false, description: 'live only: switch to postcopy when the first full precopy pass did not converge (the target runs the guest while its pages arrive); not with parallel > 1' },
            parallel: { type: 'integer', minimum: 1, maximum: 16, default: 1, description: 'multifd: this many TLS channels carry the RAM' },
            autoConverge: { type: 'boolean', description: 'throttle the vcpus of a guest dirtying RAM faster than the link (default: on for a live precopy, off with postcopy or parallel > 1; refused with parallel > 1)' },
            maxDowntimeMs: { type: 'integer', minimum: 1, maximum: 60000, default: 300, description: "QEMU's downtime-limit: the longest final stop-and-copy of a precopy, ms" },
          },
        },
      },
    },
    async (req, reply) => {
      const { progress, ...body } = req.body;
      if (!progress) return migrator.migrate(req.params.dom, body);
      ctx.toolstack.resolve(req.params.dom); // 404 before any stream starts
      await streamed<unknown, MigrateProgress>(reply, (onProgress) => migrator.migrate(req.params.dom, body, onProgress));
      return reply;
    },
  );
}
