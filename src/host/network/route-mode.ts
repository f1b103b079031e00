/**
 * network-route / vif-route: no bridge. Each vif takes the host's uplink address (/32), the host
 * routes the guest's /32 through the vif, answers ARP for the guest on the uplink (a proxy
 * neighbour entry per guest address) and for everything else on the vif (proxy_arp on the vif),
 * and forwards. The guest keeps the uplink's subnet and uses the host as its gateway.
 */
import { XenoError } from '../../common/errors.js';
import {
  addrAdd, addrList, neighProxyAdd, neighProxyDel, routeList, routeReplace, sysctlWrite, type NetCtx,
} from './ip.js';
import { contains, ipToInt, networkOf } from './ipv4.js';
import { ensureTap } from './vif.js';

export interface Uplink {
  dev: string;
  address: string;
  prefix: number;
}

/** The uplink: `netdev=` when given, else the device of the default route; and its first IPv4 address. */
export async function findUplink(ctx: NetCtx, netdev?: string): Promise<Uplink> {
  let dev = netdev;
  if (!dev) {
    const def = (await routeList(ctx)).find((r) => r.dst === 'default');
    if (!def?.dev) {
      throw new XenoError('HOST_ERROR', 'network-route: no default route to find the uplink: give netdev= in network-script');
    }
    dev = def.dev;
  }
  const addr = (await addrList(ctx, dev)).find((a) => a.scope !== 'host');
  if (!addr) throw new XenoError('HOST_ERROR', `network-route: uplink ${dev} has no IPv4 address`);
  return { dev, address: addr.local, prefix: addr.prefixlen };
}

export interface RouteVifPlan {
  ifname: string;
  alias: string;
  ips: string[];
  uplink: Uplink;
  mtu?: number;
}

/** Creates the tap with the uplink's address and the routes and proxy entries of the guest (idempotent). */
export async function plugRouteVif(ctx: NetCtx, plan: RouteVifPlan): Promise<void> {
  await ensureTap(ctx, plan.ifname, plan.alias, { mtu: plan.mtu });
  await addrAdd(ctx, plan.ifname, `${plan.uplink.address}/32`);
  await sysctlWrite(ctx, `net.ipv4.conf.${plan.ifname}.proxy_arp`, '1');
  await sysctlWrite(ctx, `net.ipv4.conf.${plan.ifname}.forwarding`, '1');
  // The guest's frames from its own subnet come in on the vif: answering ARP for it there is
  // proxy_arp's job; replies to the guest leave by the /32 route below, so no reverse-path issue.
  for (const ip of plan.ips) {
    await routeReplace(ctx, [`${ip}/32`, 'dev', plan.ifname, 'scope', 'link', 'src', plan.uplink.address]);
    await neighProxyAdd(ctx, ip, plan.uplink.dev);
  }
}

/** Removes what the tap's deletion does not take with it: the proxy entries on the uplink. */
export async function unplugRouteVif(ctx: NetCtx, ips: string[], uplinkDev: string | undefined): Promise<void> {
  if (!uplinkDev) return;
  for (const ip of ips) await neighProxyDel(ctx, ip, uplinkDev);
}

/** `ADDR/PREFIX:GATEWAY` for the guest: the uplink's subnet with the host as gateway. */
export function routeGuestNet(ip: string, uplink: Uplink): string {
  const net = { net: networkOf(ipToInt(uplink.address), uplink.prefix), prefix: uplink.prefix };
  if (contains(net, ipToInt(ip))) return `${ip}/${uplink.prefix}:${uplink.address}`;
  // An address outside the uplink's subnet (a routed block): the guest needs the host on-link,
  // which the guest image cannot express; give it the address alone.
  return `${ip}/32`;
}
