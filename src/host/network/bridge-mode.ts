/**
 * network-bridge / vif-bridge: guests sit on the physical network through a bridge (default
 * xenbr0). With `netdev=`, the physical interface is enslaved to the bridge and its IPv4 addresses
 * and routes move to the bridge (the host keeps its address and MAC), the way Xen's script did;
 * stopping puts them back. vifs are bridge ports with no address; the host does not filter them
 * (each still has an empty admin chain in the instance's bridge-family table).
 */
import { XenoError } from '../../common/errors.js';
import {
  addrAdd, addrDel, addrList, bridgeAdd, linkDel, linkGet, linkSet, routeList, routeReplace, routeWords,
  type IpRoute, type NetCtx,
} from './ip.js';
import { contains, ipToInt, networkOf } from './ipv4.js';
import type { BridgeHostState, MovedAddress } from './state.js';
import { ensureTap } from './vif.js';

export const DEFAULT_BRIDGE = 'xenbr0';

export function bridgeAlias(instance: string): string {
  return `xeno:${instance}:bridge`;
}

/** Routes worth moving with the addresses (the kernel's own prefix routes come back by themselves). */
function movableRoutes(routes: IpRoute[]): IpRoute[] {
  return routes.filter((r) => r.protocol !== 'kernel');
}

async function moveAddresses(ctx: NetCtx, from: string, to: string): Promise<{ addrs: MovedAddress[]; routes: IpRoute[] }> {
  const addrs: MovedAddress[] = (await addrList(ctx, from))
    .filter((a) => a.scope !== 'host')
    .map((a) => ({ cidr: `${a.local}/${a.prefixlen}`, broadcast: a.broadcast }));
  const routes = movableRoutes(await routeList(ctx, { dev: from }));
  for (const a of addrs) {
    await addrDel(ctx, from, a.cidr);
    await addrAdd(ctx, to, a.cidr, { broadcast: !!a.broadcast });
  }
  // Deleting the addresses took their routes with them: put them on the new device, gateways last.
  for (const r of [...routes].sort((a, b) => Number(!!a.gateway) - Number(!!b.gateway))) {
    await routeReplace(ctx, routeWords(r, to)).catch(() => undefined);
  }
  return { addrs, routes };
}

/**
 * Sets up (or finds, when re-adopting) the host bridge. `prev` is what an earlier run recorded:
 * when the physical interface is already the bridge's port, nothing is moved again.
 */
export async function startBridgeHost(
  ctx: NetCtx,
  instance: string,
  args: Record<string, string>,
  prev?: BridgeHostState,
): Promise<BridgeHostState> {
  const bridge = args.bridge ?? DEFAULT_BRIDGE;
  const netdev = args.netdev;
  if (netdev === bridge) throw new XenoError('CONFIG_INVALID', `network-bridge: netdev and bridge are both ${bridge}`);
  let br = await linkGet(ctx, bridge);
  let created = prev?.bridge === bridge ? prev.created : false;
  if (br && br.linkinfo?.info_kind !== 'bridge') throw new XenoError('HOST_ERROR', `${bridge} exists and is not a bridge`);
  if (!br) {
    await bridgeAdd(ctx, bridge);
    await linkSet(ctx, bridge, { alias: bridgeAlias(instance) });
    created = true;
    br = await linkGet(ctx, bridge);
  }
  const state: BridgeHostState = { bridge, created, netdev };
  if (netdev) {
    const nd = await linkGet(ctx, netdev);
    if (!nd) throw new XenoError('HOST_ERROR', `network-bridge: netdev ${netdev} does not exist`);
    if (nd.master === bridge) {
      state.moved = prev?.netdev === netdev ? prev.moved : undefined;
    } else {
      if (nd.master) throw new XenoError('HOST_ERROR', `network-bridge: ${netdev} is already a port of ${nd.master}`);
      // The bridge takes the NIC's MAC and MTU, so the host looks the same from the network.
      await linkSet(ctx, bridge, { address: nd.address, mtu: nd.mtu, up: true });
      await linkSet(ctx, netdev, { master: bridge, up: true });
      state.moved = await moveAddresses(ctx, netdev, bridge);
    }
  }
  await linkSet(ctx, bridge, { up: true });
  return state;
}

/** Undoes startBridgeHost: the addresses and routes now on the bridge go back to the NIC. */
export async function stopBridgeHost(ctx: NetCtx, instance: string, state: BridgeHostState): Promise<void> {
  const br = await linkGet(ctx, state.bridge);
  if (state.netdev) {
    const nd = await linkGet(ctx, state.netdev);
    if (nd && nd.master === state.bridge) {
      await linkSet(ctx, state.netdev, { nomaster: true });
      if (br) await moveAddresses(ctx, state.bridge, state.netdev);
      await linkSet(ctx, state.netdev, { up: true });
    }
  }
  if (br && state.created && br.ifalias === bridgeAlias(instance)) await linkDel(ctx, state.bridge);
}

/** The guest's static configuration on the bridge's network: prefix and gateway from the host's. */
export async function bridgeGuestNet(ctx: NetCtx, bridge: string, ip: string): Promise<{ prefix: number; gateway?: string }> {
  const a = ipToInt(ip);
  for (const addr of await addrList(ctx, bridge)) {
    const net = { net: networkOf(ipToInt(addr.local), addr.prefixlen), prefix: addr.prefixlen };
    if (!contains(net, a)) continue;
    const def = (await routeList(ctx, { dev: bridge })).find((r) => r.dst === 'default' && r.gateway);
    const gateway = def?.gateway && contains(net, ipToInt(def.gateway)) ? def.gateway : addr.local;
    return { prefix: addr.prefixlen, gateway: gateway === ip ? undefined : gateway };
  }
  return { prefix: 24, gateway: undefined };
}

export interface BridgeVifPlan {
  ifname: string;
  alias: string;
  bridge: string;
  mtu?: number;
}

/** Creates the tap and makes it a port of the bridge (idempotent). */
export async function plugBridgeVif(ctx: NetCtx, plan: BridgeVifPlan): Promise<void> {
  const br = await linkGet(ctx, plan.bridge);
  if (!br || br.linkinfo?.info_kind !== 'bridge') {
    throw new XenoError('HOST_ERROR', `bridge ${plan.bridge} does not exist (vif ${plan.ifname}): create it or use the network-script's bridge`);
  }
  await ensureTap(ctx, plan.ifname, plan.alias, { mtu: plan.mtu ?? br.mtu });
  await linkSet(ctx, plan.ifname, { master: plan.bridge, up: true });
}
