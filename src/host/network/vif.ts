/**
 * What every vif has whatever its mode: a persistent tap device `vifDOMID.N` that QEMU opens
 * (`-netdev tap,ifname=...,script=no`), marked as this instance's with its interface alias, and
 * an optional transmit rate limit.
 *
 * rate=: what the guest transmits arrives as ingress on the tap. This kernel has no police action,
 * so ingress is redirected (u32 match-all + mirred) to an ifb device whose egress is shaped by tbf.
 */
import { XenoError } from '../../common/errors.js';
import { parseRate } from '../../config/vif-spec.js';
import { ifbAdd, linkDel, linkGet, linkList, linkSet, tc, tuntapAdd, type NetCtx } from './ip.js';
import { sanitizeInstance } from './firewall.js';

/**
 * The host side of every vif has the same MAC, as in Xen: a guest that is restored or migrated (a
 * new tap) still has the right MAC for its gateway in its ARP cache.
 */
export const VIF_HOST_MAC = 'fe:ff:ff:ff:ff:ff';

/** The alias that marks a device as owned by one instance: `xeno:<instance>:<kind>:<domid>:<devid>`. */
export function ownerAlias(instance: string, kind: 'vif' | 'ifb', domid: number, devid: number): string {
  return `xeno:${sanitizeInstance(instance)}:${kind}:${domid}:${devid}`;
}

export function parseOwnerAlias(alias: string | undefined): { instance: string; kind: string; domid: number; devid: number } | undefined {
  const m = /^xeno:([A-Za-z0-9_]+):(vif|ifb):(\d+):(\d+)$/.exec(alias ?? '');
  return m ? { instance: m[1]!, kind: m[2]!, domid: Number(m[3]), devid: Number(m[4]) } : undefined;
}

export function defaultVifName(domid: number, devid: number): string {
  const n = `vif${domid}.${devid}`;
  if (n.length > 15) throw new XenoError('HOST_ERROR', `interface name ${n} is longer than 15 characters`);
  return n;
}

/** The ifb device shaping a vif: `ifb3.0` for `vif3.0`, else a name derived from the vif's. */
export function ifbNameFor(ifname: string): string {
  if (ifname.startsWith('vif')) return `ifb${ifname.slice(3)}`;
  return `ifb-${ifname}`.slice(0, 15);
}

/**
 * Creates the tap (or finds it, when re-adopting) and brings it up. A device of that name that is
 * not this instance's is an error, never taken over.
 */
export async function ensureTap(ctx: NetCtx, ifname: string, alias: string, opts: { mtu?: number } = {}): Promise<{ created: boolean }> {
  const existing = await linkGet(ctx, ifname);
  let created = false;
  if (existing) {
    if (existing.ifalias !== alias) {
      throw new XenoError('HOST_ERROR', `interface ${ifname} already exists and is not this vif's (alias "${existing.ifalias ?? ''}")`);
    }
  } else {
    await tuntapAdd(ctx, ifname);
    created = true;
    try {
      await linkSet(ctx, ifname, { alias, address: VIF_HOST_MAC });
    } catch (e) {
      await linkDel(ctx, ifname);
      throw e;
    }
  }
  await linkSet(ctx, ifname, { mtu: opts.mtu, up: true });
  return { created };
}

/** Deletes a device if it carries the expected alias (or any alias of this instance's when given a prefix). */
export async function deleteOwnedLink(ctx: NetCtx, ifname: string, alias: string): Promise<boolean> {
  const l = await linkGet(ctx, ifname);
  if (!l || l.ifalias !== alias) return false;
  return linkDel(ctx, ifname);
}

/** Every device of one instance (optionally one domain's) by alias. */
export async function ownedLinks(ctx: NetCtx, instance: string, domid?: number): Promise<Array<{ ifname: string; kind: string; domid: number; devid: number; alias: string }>> {
  const inst = sanitizeInstance(instance);
  const out = [];
  for (const l of await linkList(ctx)) {
    const o = parseOwnerAlias(l.ifalias);
    if (!o || o.instance !== inst) continue;
    if (domid !== undefined && o.domid !== domid) continue;
    out.push({ ifname: l.ifname, kind: o.kind, domid: o.domid, devid: o.devid, alias: l.ifalias! });
  }
  return out;
}

export interface Shaping {
  ifb: string;
  bytesPerSec: number;
  burstBytes: number;
}

/** tbf's bucket: the credit of one interval (xl's semantics), at least a few full frames. */
export function shapingFor(rate: string): { bytesPerSec: number; burstBytes: number } {
  const { bytesPerSec, intervalUs } = parseRate(rate);
  const perInterval = Math.floor((bytesPerSec * intervalUs) / 1_000_000);
  return { bytesPerSec, burstBytes: Math.max(perInterval, 4 * 1514) };
}

/** Limits what the guest sends through `ifname` to `rate` (idempotent: replaces what is there). */
export async function applyRate(ctx: NetCtx, ifname: string, ifb: string, alias: string, rate: string): Promise<Shaping> {
  const { bytesPerSec, burstBytes } = shapingFor(rate);
  const existing = await linkGet(ctx, ifb);
  if (existing && existing.ifalias !== alias) throw new XenoError('HOST_ERROR', `interface ${ifb} already exists and is not this vif's`);
  if (!existing) {
    await ifbAdd(ctx, ifb);
    await linkSet(ctx, ifb, { alias });
  }
  await linkSet(ctx, ifb, { up: true });
  await tc(ctx, [
    'qdisc', 'replace', 'dev', ifb, 'root', 'handle', '1:', 'tbf',
    'rate', `${bytesPerSec * 8}bit`, 'burst', String(burstBytes), 'latency', '100ms',
  ]);
  // The ingress qdisc and its redirect: start from a clean one so re-adoption does not stack filters.
  await tc(ctx, ['qdisc', 'del', 'dev', ifname, 'ingress']).catch(() => undefined);
  await tc(ctx, ['qdisc', 'add', 'dev', ifname, 'handle', 'ffff:', 'ingress']);
  await tc(ctx, [
    'filter', 'add', 'dev', ifname, 'parent', 'ffff:', 'protocol', 'all', 'prio', '1',
    'u32', 'match', 'u32', '0', '0', 'action', 'mirred', 'egress', 'redirect', 'dev', ifb,
  ]);
  return { ifb, bytesPerSec, burstBytes };
}

/** Removes the shaping of a vif (the ingress qdisc goes with the tap anyway). */
export async function removeRate(ctx: NetCtx, ifname: string, ifb: string, alias: string): Promise<void> {
  await tc(ctx, ['qdisc', 'del', 'dev', ifname, 'ingress']).catch(() => undefined);
  await deleteOwnedLink(ctx, ifb, alias);
}
