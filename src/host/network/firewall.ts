/**
 * The nftables side of the network: one set of tables per xenod instance (`xeno_<instance>` in the
 * inet, arp and bridge families), so that two daemons on one machine never touch each other's rules.
 *
 * Base chains only dispatch: verdict maps keyed by interface name jump to per-vif chains, so a vif
 * is added or removed by adding or deleting map elements and its own chains, and a packet of an
 * interface that is not a vif of this instance matches nothing here. With br_netfilter, bridged
 * frames cross the inet hooks with the bridge as their interface, never a bridge port, so routed
 * (nat, route) rules never catch bridged traffic; bridge-mode vifs have their chains in the bridge
 * family table instead.
 *
 * Each vif has one chain named after it (`vif3.0`) that belongs to the admin: xeno creates it empty,
 * jumps to it for traffic from and to the guest (and from the guest to the host), never flushes it
 * while the vif lives, and deletes it when the vif goes. Anti-spoofing (nat, route) sits in xeno's
 * own chains before it: the guest may send only from its MAC and IPv4 addresses (DHCP requests from
 * 0.0.0.0 excepted), and ARP only for its own addresses. NAT vifs also get, behind the admin's
 * chain, a policy letting in only replies, other vifs' traffic and what an admin DNATed; the
 * masquerade chain (postrouting) is added with the first NAT vif, since any nat chain turns
 * connection tracking on for the whole namespace.
 */
import { XenoError } from '../../common/errors.js';
import { nft, nftApply, runRaw, type NetCtx } from './ip.js';

export type VifMode = 'bridge' | 'nat' | 'route';

export interface FirewallVif {
  ifname: string;
  mode: VifMode;
  mac: string;
  /** The guest's IPv4 addresses (nat, route). */
  ips: string[];
}

/** Chain names xeno uses itself; a vif may not be named like one. */
const RESERVED = new Set(['forward', 'input', 'output', 'postrouting']);
const INTERNAL_PREFIXES = ['from_', 'to_', 'in_', 'arp_'];

export function tableName(instance: string): string {
  return `xeno_${sanitizeInstance(instance)}`;
}

/** An instance id as it may appear in nft names and interface aliases. */
export function sanitizeInstance(instance: string): string {
  const s = instance.replace(/[^A-Za-z0-9_]/g, '_');
  if (!s) throw new XenoError('BAD_REQUEST', 'empty network instance id');
  return s.slice(0, 32);
}

/** The admin chain of a vif: its interface name (nft identifiers must start with a letter). */
export function vifChainName(ifname: string): string {
  if (!/^[A-Za-z][A-Za-z0-9_.-]*$/.test(ifname)) {
    throw new XenoError('CONFIG_INVALID', `vif name "${ifname}" cannot name an nftables chain: it must start with a letter`);
  }
  if (RESERVED.has(ifname) || INTERNAL_PREFIXES.some((p) => ifname.startsWith(p))) {
    throw new XenoError('CONFIG_INVALID', `vif name "${ifname}" is reserved by xeno's firewall chains`);
  }
  return ifname;
}

function q(ifname: string): string {
  return `"${ifname}"`;
}

function baseScript(t: string): string {
  return `
table inet ${t} {
  set vifs { type ifname; }
  set nat_vifs { type ifname; }
  map from_vif { type ifname : verdict; }
  map to_vif { type ifname : verdict; }
  map in_vif { type ifname : verdict; }
  chain forward {
    type filter hook forward priority filter - 10; policy accept;
    iifname vmap @from_vif
    oifname vmap @to_vif
  }
  chain input {
    type filter hook input priority filter - 10; policy accept;
    iifname vmap @in_vif
  }
}
table arp ${t} {
  map in_vif { type ifname : verdict; }
  chain input {
    type filter hook input priority filter - 10; policy accept;
    iifname vmap @in_vif
  }
}
table bridge ${t} {
  map from_port { type ifname : verdict; }
  map to_port { type ifname : verdict; }
  chain forward {
    type filter hook forward priority filter - 10; policy accept;
    iifname vmap @from_port
    oifname vmap @to_port
  }
  chain input {
    type filter hook input priority filter - 10; policy accept;
    iifname vmap @from_port
  }
}
`;
}

interface NftListing {
  nftables: Array<Record<string, { family: string; table?: string; name?: string; elem?: unknown[] } | undefined>>;
}

export class Firewall {
  readonly table: string;

  constructor(
    private readonly ctx: NetCtx,
    instance: string,
  ) {
    this.table = tableName(instance);
  }

  private async tableExists(family: string): Promise<boolean> {
    return (await runRaw(['nft', 'list', 'table', family, this.table], this.ctx)).code === 0;
  }

  /** Creates the instance's tables once; an existing table is left as it is (admins' rules too). */
  async ensureBase(): Promise<void> {
    const present = await Promise.all(['inet', 'arp', 'bridge'].map((f) => this.tableExists(f)));
    if (present.every(Boolean)) return;
    if (present.some(Boolean)) await this.removeAll(); // half there: start over
    await nftApply(this.ctx, baseScript(this.table));
  }

  async removeAll(): Promise<void> {
    for (const family of ['inet', 'arp', 'bridge']) {
      if (await this.tableExists(family)) await nft(this.ctx, ['delete', 'table', family, this.table]);
    }
  }

  /** The family of the table holding a vif's admin chain. */
  static familyOf(mode: VifMode): 'inet' | 'bridge' {
    return mode === 'bridge' ? 'bridge' : 'inet';
  }

  /** Adds (or refreshes, for re-adoption) a vif's chains and map entries in one transaction. */
  async plugVif(v: FirewallVif): Promise<void> {
    const t = this.table;
    const chain = vifChainName(v.ifname);
    const lines: string[] = [];
    if (v.mode === 'bridge') {
      lines.push(
        `add chain bridge ${t} ${chain}`,
        `add element bridge ${t} from_port { ${q(v.ifname)} : jump ${chain} }`,
        `add element bridge ${t} to_port { ${q(v.ifname)} : jump ${chain} }`,
      );
      await nftApply(this.ctx, lines.join('\n') + '\n');
      return;
    }
    const ips = v.ips.filter((ip) => /^\d+\.\d+\.\d+\.\d+$/.test(ip));
    if (ips.length === 0) throw new XenoError('HOST_ERROR', `vif ${v.ifname}: no IPv4 address to filter on`);
    const ipSet = `{ ${ips.join(', ')} }`;
    const from = `from_${chain}`;
    const to = `to_${chain}`;
    const inp = `in_${chain}`;
    const arp = `arp_${chain}`;
    lines.push(
      `add chain inet ${t} ${chain}`,
      // guest -> anywhere it is routed to
      `add chain inet ${t} ${from}`,
      `flush chain inet ${t} ${from}`,
      `add rule inet ${t} ${from} ether saddr != ${v.mac} drop`,
      `add rule inet ${t} ${from} meta nfproto != ipv4 drop`,
      // counted: what the anti-spoofing dropped is visible in `xeno network-rules`/nft
      `add rule inet ${t} ${from} ip saddr != ${ipSet} counter drop`,
      `add rule inet ${t} ${from} jump ${chain}`,
      // guest -> host
      `add chain inet ${t} ${inp}`,
      `flush chain inet ${t} ${inp}`,
      `add rule inet ${t} ${inp} ether saddr != ${v.mac} drop`,
      `add rule inet ${t} ${inp} meta nfproto != ipv4 drop`,
      `add rule inet ${t} ${inp} ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept`,
      `add rule inet ${t} ${inp} ip saddr != ${ipSet} counter drop`,
      `add rule inet ${t} ${inp} jump ${chain}`,
      // anywhere -> guest
      `add chain inet ${t} ${to}`,
      `flush chain inet ${t} ${to}`,
      `add rule inet ${t} ${to} jump ${chain}`,
    );
    if (v.mode === 'nat') {
      // Behind NAT the outside starts nothing: replies, other guests, and what an admin forwarded
      // (a DNAT of their own, or an accept in the vif's chain above) only.
      lines.push(
        `add rule inet ${t} ${to} ct state established,related accept`,
        `add rule inet ${t} ${to} ct status dnat accept`,
        `add rule inet ${t} ${to} iifname @vifs accept`,
        `add rule inet ${t} ${to} drop`,
      );
    }
    lines.push(
      `add element inet ${t} vifs { ${q(v.ifname)} }`,
      `add element inet ${t} from_vif { ${q(v.ifname)} : jump ${from} }`,
      `add element inet ${t} to_vif { ${q(v.ifname)} : jump ${to} }`,
      `add element inet ${t} in_vif { ${q(v.ifname)} : jump ${inp} }`,
      `add chain arp ${t} ${arp}`,
      `flush chain arp ${t} ${arp}`,
      `add rule arp ${t} ${arp} arp saddr ether != ${v.mac} drop`,
      `add rule arp ${t} ${arp} arp saddr ip != { ${[...ips, '0.0.0.0'].join(', ')} } drop`,
      `add element arp ${t} in_vif { ${q(v.ifname)} : jump ${arp} }`,
    );
    if (v.mode === 'nat') {
      lines.push(`add element inet ${t} nat_vifs { ${q(v.ifname)} }`);
      // The masquerade chain only once NAT is used: a nat chain turns connection tracking on for
      // the whole namespace, bridged traffic included (br_netfilter), a cost other modes need not pay.
      if ((await runRaw(['nft', 'list', 'chain', 'inet', t, 'postrouting'], this.ctx)).code !== 0) {
        lines.unshift(
          `add chain inet ${t} postrouting { type nat hook postrouting priority srcnat; policy accept; }`,
          `add rule inet ${t} postrouting iifname @nat_vifs oifname != @vifs masquerade`,
        );
      }
    }
    await nftApply(this.ctx, lines.join('\n') + '\n');
  }

  /** Removes whatever exists of a vif's chains and map entries; missing pieces are not errors. */
  async unplugVif(ifname: string): Promise<void> {
    const t = this.table;
    const listing = await this.listing();
    const has = (family: string, kind: string, name: string) =>
      listing.some((o) => o[kind]?.family === family && o[kind]?.table === t && o[kind]?.name === name);
    const elemIn = (family: string, kind: 'set' | 'map', name: string) =>
      listing.some((o) => {
        const s = o[kind];
        if (!s || s.family !== family || s.table !== t || s.name !== name || !Array.isArray(s.elem)) return false;
        return s.elem.some((e) => (Array.isArray(e) ? e[0] : e) === ifname);
      });
    const lines: string[] = [];
    for (const [family, kind, name] of [
      ['inet', 'map', 'from_vif'], ['inet', 'map', 'to_vif'], ['inet', 'map', 'in_vif'], ['inet', 'set', 'vifs'],
      ['inet', 'set', 'nat_vifs'], ['arp', 'map', 'in_vif'], ['bridge', 'map', 'from_port'], ['bridge', 'map', 'to_port'],
    ] as const) {
      if (elemIn(family, kind, name)) lines.push(`delete element ${family} ${t} ${name} { ${q(ifname)} }`);
    }
    // Callers first, then the chains they jump to.
    for (const [family, name] of [
      ['inet', `from_${ifname}`], ['inet', `to_${ifname}`], ['inet', `in_${ifname}`], ['arp', `arp_${ifname}`],
      ['inet', ifname], ['bridge', ifname],
    ] as const) {
      if (has(family, 'chain', name)) lines.push(`flush chain ${family} ${t} ${name}`);
    }
    for (const [family, name] of [
      ['inet', `from_${ifname}`], ['inet', `to_${ifname}`], ['inet', `in_${ifname}`], ['arp', `arp_${ifname}`],
      ['inet', ifname], ['bridge', ifname],
    ] as const) {
      if (has(family, 'chain', name)) lines.push(`delete chain ${family} ${t} ${name}`);
    }
    if (lines.length) await nftApply(this.ctx, lines.join('\n') + '\n');
  }

  private async listing(): Promise<NftListing['nftables']> {
    const out: NftListing['nftables'] = [];
    for (const family of ['inet', 'arp', 'bridge']) {
      const r = await runRaw(['nft', '-j', 'list', 'table', family, this.table], this.ctx);
      if (r.code !== 0) continue;
      out.push(...(JSON.parse(r.stdout) as NftListing).nftables);
    }
    return out;
  }

  /** The rules of a vif's admin chain as nft prints them (empty when the chain has none). */
  async chainRules(mode: VifMode, ifname: string): Promise<string[] | undefined> {
    const family = Firewall.familyOf(mode);
    const r = await runRaw(['nft', 'list', 'chain', family, this.table, ifname], this.ctx);
    if (r.code !== 0) return undefined;
    const lines = r.stdout.split('\n').map((l) => l.trim());
    const start = lines.findIndex((l) => l.startsWith('chain '));
    if (start < 0) return [];
    const rules: string[] = [];
    for (const l of lines.slice(start + 1)) {
      if (l === '}') break;
      if (l) rules.push(l);
    }
    return rules;
  }

  /** Names of the vif chains present (for sweeping leftovers). */
  async vifChains(): Promise<Array<{ family: string; name: string }>> {
    const listing = await this.listing();
    return listing
      .map((o) => o.chain)
      .filter((c): c is { family: string; table: string; name: string } => !!c && c.table === this.table && !!c.name)
      .filter((c) => !['forward', 'input', 'postrouting'].includes(c.name))
      .map((c) => ({ family: c.family, name: c.name }));
  }

  /** Other xeno instances' tables on this host (to decide whether host-wide sysctls are shared). */
  async otherInstances(): Promise<string[]> {
    const r = await runRaw(['nft', '-j', 'list', 'tables'], this.ctx);
    if (r.code !== 0) return [];
    const tables = (JSON.parse(r.stdout) as NftListing).nftables
      .map((o) => o.table?.name)
      .filter((n): n is string => !!n && n.startsWith('xeno_') && n !== this.table);
    return [...new Set(tables)];
  }
}
