/**
 * Snapshot routes (xeno snapshot-create / -list / -revert / -delete) of running or defined
 * guests: external qcow2 overlays, optionally with the RAM state (src/toolstack/snapshots.ts).
 */
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { XenoError } from '../../common/errors.js';
import { QemuAccess, ensureQemuUser } from '../../host/qemu-user.js';
import type { Definitions } from '../../toolstack/definitions.js';
import { SnapshotStore } from '../../toolstack/snapshot-store.js';
import { Snapshots } from '../../toolstack/snapshots.js';
import type { DaemonContext } from '../context.js';
import { domParam } from './schemas.js';

const snapParams = {
  type: 'object',
  properties: { dom: { type: 'string', description: 'guest name or id' }, snap: { type: 'string', description: 'snapshot name' } },
  required: ['dom', 'snap'],
} as const;

export interface SnapshotCreateRequest {
  name: string;
  memory?: boolean;
  quiesce?: boolean;
}

export function registerSnapshotRoutes(app: FastifyInstance, ctx: DaemonContext): void {
  let snaps: Snapshots | undefined;
  // Built on first use: documenting the API opens no database and creates no user.
  const service = () => {
    if (!snaps) {
      const runRoot = path.join(ctx.config.stateDir, 'run');
      snaps = new Snapshots({
        ts: ctx.toolstack,
        definitions: () => ctx.services.definitions as Definitions | undefined,
        access: new QemuAccess(ensureQemuUser(ctx.config.qemuUser), runRoot),
        store: new SnapshotStore(() => path.join(ctx.config.stateDir, 'xeno.db')),
        agent: {
          // A ping first: a guest without an agent is told in 2 s, not after the freeze's 30 s.
          freeze: async (rec) => {
            const agent = ctx.toolstack.guestAgent(rec);
            if (!(await agent.ping())) throw new XenoError('BAD_STATE', `cannot quiesce ${rec.name}: no agent answers guest-fsfreeze-freeze; the snapshot was not taken (leave out --quiesce for a crash-consistent one)`);
            return agent.fsfreeze();
          },
          thaw: async (rec) => {
            await ctx.toolstack.guestAgent(rec).fsthaw();
          },
        },
      });
    }
    return snaps;
  };
  app.addHook('onClose', async () => snaps?.close());

  app.post<{ Params: { dom: string }; Body: SnapshotCreateRequest }>(
    '/v1/domains/:dom/snapshots',
    {
      schema: {
        summary: 'Take a snapshot of a running or defined guest: external qcow2 overlays on every writable disk, atomically; with memory also its RAM state',
        params: domParam,
        body: {
          type: 'object',
          required: ['name'],
          properties: {
            name: { type: 'string', minLength: 1, maxLength: 64, description: 'snapshot name ([A-Za-z0-9_.-])' },
            memory: { type: 'boolean', default: false, description: 'save RAM and device state too (running guests): a revert resumes the guest' },
            quiesce: { type: 'boolean', default: false, description: "freeze the guest's filesystems through its guest agent around the snapshot" },
          },
        },
      },
    },
    async (req) => service().create(req.params.dom, req.body.name, { memory: req.body.memory, quiesce: req.body.quiesce }),
  );

  app.get<{ Params: { dom: string } }>(
    '/v1/domains/:dom/snapshots',
    { schema: { summary: "A guest's snapshot tree, depth-first (depth, parent, time, with or without memory, the current one)", params: domParam } },
    async (req) => service().list(req.params.dom),
  );

  app.post<{ Params: { dom: string; snap: string } }>(
    '/v1/domains/:dom/snapshots/:snap/revert',
    { schema: { summary: 'Revert a guest to a snapshot (its present disk state is discarded; with memory it resumes where it was)', params: snapParams } },
    async (req) => service().revert(req.params.dom, req.params.snap),
  );

  app.delete<{ Params: { dom: string; snap: string } }>(
    '/v1/domains/:dom/snapshots/:snap',
    { schema: { summary: 'Delete a snapshot, merging its overlay into the image below (block-commit while the guest runs)', params: snapParams } },
    async (req) => service().delete(req.params.dom, req.params.snap),
  );
}
