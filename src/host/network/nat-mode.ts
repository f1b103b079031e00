/**
 * network-nat / vif-nat: the host is the guests' gateway. The pool (xeno-nat-subnet, default
 * 10.0.0.0/16) is cut into /30s; each vif gets one: the host side takes one usable address, the
 * guest the other (its `ip=` when given, which picks the /30, else handed out by the instance's
 * dnsmasq). Outbound traffic is masqueraded (the firewall's postrouting chain), inbound is limited
 * to replies (the vif's to_ chain).
 */
import { createHash } from 'node:crypto';
import { XenoError } from '../../common/errors.js';
import { addrAdd, type NetCtx } from './ip.js';
import { natSlot, parseCidr4, slotCount, slotForGuestIp, type Cidr, type NatSlot } from './ipv4.js';
import { ensureTap } from './vif.js';

/**
 * The /30 a vif without ip= prefers: derived from (domain name, devid), so that a guest restored
 * or migrated (and still configured with its old lease) finds the same subnet again.
 */
export function preferredNatSlot(poolCidr: string, name: string, devid: number): number {
  const n = slotCount(parseCidr4(poolCidr));
  const h = createHash('sha256').update(`xeno-nat\0${name}\0${devid}`).digest().readUInt32BE(0);
  return 1 + (h % (n - 1));
}

/** Picks the vif's /30: the one its ip= falls in, else its preferred one, else the next free one. */
export function allocateNatSlot(poolCidr: string, ip: string | undefined, used: Map<number, string>, owner: string, preferred = 1): NatSlot {
  const pool: Cidr = parseCidr4(poolCidr);
  if (ip) {
    const slot = slotForGuestIp(pool, ip);
    if (!slot) throw new XenoError('CONFIG_INVALID', `ip=${ip} of ${owner} is outside the NAT subnet ${poolCidr} (xeno-nat-subnet)`);
    const holder = used.get(slot.index);
    if (holder && holder !== owner) throw new XenoError('HOST_ERROR', `${slot.network}/30 (for ip=${ip}) is already used by ${holder}`);
    return slot;
  }
  const n = slotCount(pool);
  const start = preferred >= 1 && preferred < n ? preferred : 1;
  for (let k = 0; k < n - 1; k++) {
    const i = 1 + ((start - 1 + k) % (n - 1));
    const holder = used.get(i);
    if (!holder || holder === owner) return natSlot(pool, i);
  }
  throw new XenoError('HOST_ERROR', `the NAT subnet ${poolCidr} has no free /30 left`);
}

export interface NatVifPlan {
  ifname: string;
  alias: string;
  slot: NatSlot;
  mtu?: number;
}

/** Creates the tap with the host side of the vif's /30 (idempotent). */
export async function plugNatVif(ctx: NetCtx, plan: NatVifPlan): Promise<void> {
  await ensureTap(ctx, plan.ifname, plan.alias, { mtu: plan.mtu });
  await addrAdd(ctx, plan.ifname, `${plan.slot.host}/${plan.slot.prefix}`, { broadcast: true });
}

/** `ADDR/30:GATEWAY` for a static guest, `dhcp` otherwise. */
export function natGuestNet(slot: NatSlot, staticIp: boolean): string {
  return staticIp ? `${slot.guest}/${slot.prefix}:${slot.host}` : 'dhcp';
}
