/** Block device routes (block-list, block-attach, block-detach, cd-insert, cd-eject) and disk images. */
import type { FastifyInstance } from 'fastify';
import { BlockDevices } from '../../toolstack/block.js';
import { imageCreate, imageInfo } from '../../toolstack/images.js';
import type { DaemonContext } from '../context.js';
import { domParam } from './schemas.js';

type DomReq = { Params: { dom: string } };
type VdevReq = { Params: { dom: string; vdev: string } };
const vdevParam = {
  type: 'object',
  required: ['dom', 'vdev'],
  properties: { dom: { type: 'string', description: 'domain name or id' }, vdev: { type: 'string', description: 'guest device name, e.g. xvdb' } },
} as const;

export function registerBlockRoutes(app: FastifyInstance, ctx: DaemonContext): void {
  const block = new BlockDevices(ctx.toolstack);

  app.get<DomReq>('/v1/domains/:dom/block', { schema: { summary: "A domain's disks and cdroms with QEMU's I/O counters (xm block-list)", params: domParam } }, async (req) => ({
    disks: await block.list(req.params.dom),
  }));

  app.post<DomReq & { Body: { spec: string } }>(
    '/v1/domains/:dom/block',
    {
      schema: {
        summary: 'Hot-plug a disk (xm block-attach): any disk spec the config accepts; kept in the stored config',
        params: domParam,
        body: { type: 'object', required: ['spec'], properties: { spec: { type: 'string', description: "e.g. 'file:/srv/data.img,xvdb,w' or 'format=qcow2, vdev=xvdb, target=/srv/d.qcow2'" } } },
      },
    },
    async (req) => block.attach(req.params.dom, req.body.spec),
  );

  app.delete<VdevReq & { Querystring: { timeout?: number } }>(
    '/v1/domains/:dom/block/:vdev',
    {
      schema: {
        summary: 'Unplug a disk (xm block-detach): waits for the guest to release it (DEVICE_DELETED), then closes its image',
        params: vdevParam,
        querystring: { type: 'object', properties: { timeout: { type: 'number', minimum: 0, description: 'seconds to wait for the guest (default 30)' } } },
      },
    },
    async (req) => block.detach(req.params.dom, req.params.vdev, req.query.timeout === undefined ? undefined : req.query.timeout * 1000),
  );

  app.post<VdevReq & { Body: { target: string } }>(
    '/v1/domains/:dom/block/:vdev/insert',
    { schema: { summary: 'Insert a medium in a cdrom drive (xm cd-insert)', params: vdevParam, body: { type: 'object', required: ['target'], properties: { target: { type: 'string' } } } } },
    async (req) => block.cdInsert(req.params.dom, req.params.vdev, req.body.target),
  );

  app.post<VdevReq>('/v1/domains/:dom/block/:vdev/eject', { schema: { summary: 'Eject the medium of a cdrom drive (xm cd-eject)', params: vdevParam } }, async (req) =>
    block.cdEject(req.params.dom, req.params.vdev),
  );

  app.get<{ Querystring: { path: string } }>(
    '/v1/images',
    { schema: { summary: 'An image on this host: format, virtual and real size, backing chain (qemu-img info, safely)', querystring: { type: 'object', required: ['path'], properties: { path: { type: 'string' } } } } },
    async (req) => imageInfo(ctx.config, req.query.path),
  );

  app.post<{ Body: { path: string; size?: string; format?: 'qcow2' | 'raw'; backing?: string } }>(
    '/v1/images',
    {
      schema: {
        summary: 'Create an image (qcow2 or raw); with a backing file, a thin qcow2 clone of it',
        body: {
          type: 'object',
          required: ['path'],
          properties: {
            path: { type: 'string' },
            size: { type: 'string', description: 'MiB, or a size with b/k/m/g/t; optional with a backing file' },
            format: { type: 'string', enum: ['qcow2', 'raw'] },
            backing: { type: 'string', description: 'base image of a thin clone' },
          },
        },
      },
    },
    async (req) => imageCreate(ctx.config, req.body),
  );
}
