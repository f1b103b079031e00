/** Network routes: network-list, network-attach, network-detach, network-rules (xm's names). */
import type { FastifyInstance } from 'fastify';
import { XenoError } from '../../common/errors.js';
import { networkAttach, networkDetach, networkList, networkRules } from '../../host/network/hotplug.js';
import { NetworkManager } from '../../host/network/network-manager.js';
import type { DaemonContext } from '../context.js';
import { domParam } from './schemas.js';

type DomReq = { Params: { dom: string } };

/** The composition root registers the daemon's NetworkManager as `services.network`. */
export function networkOf(ctx: DaemonContext): NetworkManager {
  const nm = ctx.services.network;
  if (nm instanceof NetworkManager) return nm;
  throw new XenoError('HOST_ERROR', 'this xenod has no network manager');
}

const vifEntry = {
  type: 'object',
  additionalProperties: true,
  properties: {
    devid: { type: 'integer' },
    ifname: { type: 'string' },
    mac: { type: 'string' },
    mode: { type: 'string' },
    ips: { type: 'array', items: { type: 'string' } },
    dhcp: { type: 'boolean' },
    bridge: { type: 'string' },
    hostAddr: { type: 'string' },
    rate: { type: 'string' },
    model: { type: 'string' },
    guestNet: { type: 'string' },
  },
} as const;

export function registerNetworkRoutes(app: FastifyInstance, ctx: DaemonContext): void {
  app.get<DomReq>(
    '/v1/domains/:dom/network',
    {
      schema: {
        summary: "A domain's virtual interfaces and their backends (xm network-list)",
        params: domParam,
        response: { 200: { type: 'object', properties: { domid: { type: 'integer' }, name: { type: 'string' }, vifs: { type: 'array', items: vifEntry } } } },
      },
    },
    async (req) => networkList(ctx.toolstack, networkOf(ctx), req.params.dom),
  );

  app.post<DomReq & { Body: { spec?: string } }>(
    '/v1/domains/:dom/network-attach',
    {
      schema: {
        summary: 'Hot-plug a virtio-net interface with its backend (xm network-attach); the spec is an xl vif spec',
        params: domParam,
        body: { type: 'object', properties: { spec: { type: 'string', default: '', description: "e.g. 'ip=10.0.0.14,rate=10Mb/s'" } } },
        response: { 200: vifEntry },
      },
    },
    async (req) => networkAttach(ctx.toolstack, networkOf(ctx), req.params.dom, req.body.spec ?? ''),
  );

  app.post<DomReq & { Body: { vif: string | number; timeout?: number } }>(
    '/v1/domains/:dom/network-detach',
    {
      schema: {
        summary: 'Unplug an interface (xm network-detach): the guest releases it (DEVICE_DELETED), then its backend goes',
        params: domParam,
        body: {
          type: 'object',
          required: ['vif'],
          properties: {
            vif: { type: ['integer', 'string'], description: 'devid or MAC address' },
            timeout: { type: 'number', minimum: 0, description: 'seconds to wait for the guest (default 30)' },
          },
        },
      },
    },
    async (req) =>
      networkDetach(ctx.toolstack, networkOf(ctx), req.params.dom, String(req.body.vif), req.body.timeout === undefined ? undefined : req.body.timeout * 1000),
  );

  app.get<DomReq>(
    '/v1/domains/:dom/network-rules',
    { schema: { summary: "The rules in each of a domain's vif chains (nftables), which an admin may edit", params: domParam } },
    async (req) => networkRules(ctx.toolstack, networkOf(ctx), req.params.dom),
  );
}
