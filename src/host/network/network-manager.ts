/**
 * The host side of guest networking for one xenod instance: the host-wide setup of the configured
 * mode (network-script) and each vif's backend (vif-script, or the vif's own `script=`).
 *
 * Everything is idempotent, so a restarted daemon re-adopts what it finds instead of duplicating
 * it: host.json and vifs/*.json under `<stateDir>/network/` say what was set up, devices carry an
 * alias naming their instance, and the nftables tables are named after the instance.
 *
 * Lifecycle: the host-wide setup is made when the first vif needs it (or by startHost()); resume()
 * at daemon start re-adopts an earlier one (and undoes it first if the network-script changed);
 * stopHost() is the explicit stop that puts the physical interface back. A plain daemon stop
 * leaves the network as it is, so the guests stay connected. When the last vif goes, the setup is
 * removed too, except a bridge holding the physical interface (netdev=), which stays until the
 * explicit stop. The hooks plug every vif before QEMU starts (extending the guest's command line
 * with `xeno.net=` arguments) and unplug them when it is gone.
 */
import type { VifRules } from '../../model/api.js';
import { createHash } from 'node:crypto';
import { isIPv4 } from 'node:net';
import path from 'node:path';
import type { Logger } from 'pino';
import { XenoError } from '../../common/errors.js';
import { parseNetworkScript } from '../../config/daemon-config.js';
import { scriptBaseName } from '../../config/vif-spec.js';
import type { NicBackend } from '../../hypervisor/qemu/argv.js';
import type { Vm } from '../../hypervisor/backend.js';
import { vifsInQemu } from './hotplug.js';
import { DEFAULT_STATE_DIR, type DaemonConfig, type NetworkMode } from '../../model/daemon-config.js';
import { effectiveCmdline, type DomainConfig, type VifSpec } from '../../model/domain-config.js';
import type { DomainHooks } from '../../toolstack/hooks.js';
import type { DomainRecord } from '../../toolstack/store.js';
import { DEFAULT_BRIDGE, bridgeGuestNet, plugBridgeVif, startBridgeHost, stopBridgeHost } from './bridge-mode.js';
import { Dnsmasq, type DhcpEntry } from './dnsmasq.js';
import { Firewall, sanitizeInstance, vifChainName, type VifMode } from './firewall.js';
import { linkDel, sysctlRead, sysctlWrite, type NetCtx } from './ip.js';
import { natSlot, parseCidr4 } from './ipv4.js';
import { vifMac } from './mac.js';
import { allocateNatSlot, natGuestNet, plugNatVif, preferredNatSlot } from './nat-mode.js';
import { findUplink, plugRouteVif, routeGuestNet, unplugRouteVif } from './route-mode.js';
import { NetStateFiles, type HostState, type VifState } from './state.js';
import {
  applyRate, defaultVifName, deleteOwnedLink, ifbNameFor, ownedLinks, ownerAlias, removeRate,
} from './vif.js';

export interface NetworkManagerOptions {
  config: DaemonConfig;
  /** Names this daemon's tables, aliases and files apart from another daemon's on the same host. */
  instanceId: string;
  /** Defaults to config.stateDir; the network's files go to `<stateDir>/network/`. */
  stateDir?: string;
  /** Act inside this network namespace (tests, benchmark); absent = the daemon's own. */
  netns?: string;
  /** Uid the taps belong to: QEMU's unprivileged user (absent = root). */
  tapOwner?: number;
  log?: Logger;
}

export interface PlugResult {
  nic: NicBackend;
  /** `xeno.net=ethN:...` for the guest's kernel command line, when the mode has something to say. */
  guestArg?: string;
}

export type { VifRules };

/** vif-bridge | vif-nat | vif-route (possibly with a path) -> the mode. */
export function vifModeOf(script: string | undefined, defaultScript: string): VifMode {
  const s = scriptBaseName(script ?? defaultScript);
  switch (s) {
    case 'vif-bridge':
      return 'bridge';
    case 'vif-nat':
      return 'nat';
    case 'vif-route':
      return 'route';
    default:
      throw new XenoError('CONFIG_INVALID', `unknown vif script "${s}" (vif-bridge, vif-nat, vif-route)`);
  }
}

/** xl's model= names -> QEMU NIC devices; virtio-net (xennet's counterpart) by default. */
export function nicModel(model?: string): string | undefined {
  if (!model || model === 'virtio' || model === 'virtio-net' || model === 'netfront') return undefined;
  return model;
}

/** The config with `xeno.net=` arguments appended (those for an ethN the user configured are left out). */
export function withGuestArgs(c: DomainConfig, args: string[]): DomainConfig {
  const base = effectiveCmdline(c) ?? '';
  const mine = args.filter((a) => {
    const m = /^xeno\.net=(eth\d+):/.exec(a);
    return !m || !new RegExp(`(^|\\s)xeno\\.net=${m[1]}:`).test(base);
  });
  if (mine.length === 0) return c;
  if (c.cmdline !== undefined) return { ...c, cmdline: [c.cmdline, ...mine].filter(Boolean).join(' ') };
  return { ...c, extra: [c.extra, ...mine].filter(Boolean).join(' ') };
}

/** The instance id of the daemon using `stateDir`: `main` for the default one, else a hash of the path. */
export function instanceIdFor(stateDir: string): string {
  const abs = path.resolve(stateDir);
  if (abs === DEFAULT_STATE_DIR) return 'main';
  return `i${createHash('sha256').update(abs).digest('hex').slice(0, 8)}`;
}

function normaliseScript(s: string): string {
  return s.trim().split(/\s+/).join(' ');
}

export class NetworkManager {
  readonly mode: NetworkMode;
  readonly args: Record<string, string>;
  readonly instance: string;
  readonly dir: string;
  readonly dnsmasq: Dnsmasq;
  private readonly ctx: NetCtx;
  private readonly fw: Firewall;
  private readonly files: NetStateFiles;
  private readonly config: DaemonConfig;
  private readonly log?: Logger;
  private queue: Promise<unknown> = Promise.resolve();
  private started = false;

  constructor(opts: NetworkManagerOptions) {
    this.config = opts.config;
    const { mode, args } = parseNetworkScript(opts.config.networkScript);
    this.mode = mode;
    this.args = args;
    this.instance = sanitizeInstance(opts.instanceId);
    this.dir = path.join(opts.stateDir ?? opts.config.stateDir, 'network');
    this.ctx = { netns: opts.netns, tapOwner: opts.tapOwner };
    this.log = opts.log;
    this.fw = new Firewall(this.ctx, this.instance);
    this.files = new NetStateFiles(this.dir);
    this.dnsmasq = new Dnsmasq(this.ctx, this.dir, opts.log);
  }

  /** The nftables table (in the inet, arp and bridge families) of this instance. */
  get table(): string {
    return this.fw.table;
  }

  /** The bridge bridge-mode vifs join unless their spec names another. */
  get bridgeName(): string {
    return this.args.bridge ?? DEFAULT_BRIDGE;
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.queue.then(fn, fn);
    this.queue = p.catch(() => undefined);
    return p;
  }

  // ---- host-wide ------------------------------------------------------------------------------

  /** Sets up the mode's host network, or re-adopts it; undoes an earlier, different setup first. */
  startHost(): Promise<void> {
    return this.exclusive(() => this.startHostLocked());
  }

  private async startHostLocked(): Promise<void> {
    const script = normaliseScript(this.config.networkScript);
    let prev = this.files.host();
    if (prev && (prev.script !== script || prev.natSubnet !== this.config.natSubnet)) {
      this.log?.info({ from: prev.script, to: script }, 'network-script changed: undoing the earlier host network setup');
      await this.stopHostLocked();
      prev = undefined;
    }
    const host: HostState = {
      version: 1, mode: this.mode, script, natSubnet: this.config.natSubnet, sysctls: prev?.sysctls ?? {}, bridge: prev?.bridge,
    };
    this.files.saveHost(host); // first, so that a failure below can still be undone by stopHost
    await this.fw.ensureBase();
    if (this.mode === 'bridge') {
      host.bridge = await startBridgeHost(this.ctx, this.instance, this.args, prev?.bridge);
      this.files.saveHost(host);
    } else {
      await this.ensureForwarding(host);
      if (this.mode === 'route') await findUplink(this.ctx, this.args.netdev);
    }
    this.started = true;
    await this.syncDhcp();
    this.dnsmasq.supervise();
    this.log?.info({ mode: this.mode, script, table: this.fw.table }, 'host network ready');
  }

  private async ensureForwarding(host: HostState): Promise<void> {
    const key = 'net.ipv4.ip_forward';
    const cur = await sysctlRead(this.ctx, key);
    if (cur === '1') return;
    if (host.sysctls[key] === undefined && cur !== undefined) host.sysctls[key] = cur;
    this.files.saveHost(host);
    await sysctlWrite(this.ctx, key, '1');
  }

  /**
   * The explicit stop: removes the host-wide setup (firewall tables, dnsmasq, proxy entries, the
   * bridge) and puts the physical interface's addresses and routes back. Guests' taps are left to
   * their domains (a running QEMU holds them); stop the guests first for a clean host.
   */
  stopHost(): Promise<void> {
    return this.exclusive(() => this.stopHostLocked());
  }

  private async stopHostLocked(): Promise<void> {
    const host = this.files.host();
    this.dnsmasq.unsupervise();
    await this.dnsmasq.stop();
    for (const v of this.files.vifs()) {
      if (v.mode === 'route') await unplugRouteVif(this.ctx, v.ips, v.uplink);
    }
    const others = await this.fw.otherInstances();
    await this.fw.removeAll();
    if (host?.bridge) await stopBridgeHost(this.ctx, this.instance, host.bridge);
    if (host && others.length === 0) {
      for (const [k, v] of Object.entries(host.sysctls)) await sysctlWrite(this.ctx, k, v).catch(() => undefined);
    }
    this.files.removeHost();
    this.started = false;
    this.log?.info({ mode: host?.mode }, 'host network stopped');
  }

  /**
   * At daemon start: re-adopts an earlier setup (or redoes it, if the network-script changed).
   * A host that has none is left alone until a vif needs it (plug sets it up then), so a daemon
   * whose guests have no network never touches the host's. Returns whether there was one.
   */
  resume(): Promise<boolean> {
    return this.exclusive(async () => {
      if (!this.files.host()) return false;
      await this.startHostLocked();
      return true;
    });
  }

  /**
   * Once no vif is left, the host-wide setup goes too, unless it holds the host's own network (a
   * bridge with the physical interface enslaved), which stays until an explicit stop.
   */
  private async stopIfIdle(): Promise<void> {
    const host = this.files.host();
    if (!host || this.files.vifs().length > 0 || host.bridge?.netdev) return;
    this.log?.info({ mode: host.mode }, 'no vif left: removing the host network setup');
    await this.stopHostLocked();
  }

  /** Stop watching dnsmasq (daemon exit): the network itself stays up. */
  close(): void {
    this.dnsmasq.unsupervise();
  }

  // ---- vifs -----------------------------------------------------------------------------------

  /** Sets up the backend of one vif (idempotent: re-plugging an existing vif refreshes it). */
  plug(domid: number, name: string, vif: VifSpec, opts: { ethIndex?: number } = {}): Promise<PlugResult> {
    return this.exclusive(() => this.plugLocked(domid, name, vif, opts));
  }

  private async plugLocked(domid: number, name: string, vif: VifSpec, opts: { ethIndex?: number }): Promise<PlugResult> {
    const devid = vif.devid;
    const mode = vifModeOf(vif.script, this.config.vifScript);
    const ifname = vif.vifname ?? defaultVifName(domid, devid);
    vifChainName(ifname);
    const prev = this.files.vif(domid, devid);
    if (prev && (prev.ifname !== ifname || prev.mode !== mode)) {
      await this.unplugOne(prev);
    }
    const fresh = !prev || prev.ifname !== ifname || prev.mode !== mode;
    const conflict = this.files.vifs().find((v) => v.ifname === ifname && (v.domid !== domid || v.devid !== devid));
    if (conflict) throw new XenoError('HOST_ERROR', `interface ${ifname} is already domain ${conflict.domid}'s vif ${conflict.devid}`);
    const alias = ownerAlias(this.instance, 'vif', domid, devid);
    const mac = vifMac(name, devid, vif.mac);
    const specIps = (vif.ip ?? '').split(/\s+/).filter((ip) => isIPv4(ip));
    if (vif.ip && specIps.length === 0) throw new XenoError('CONFIG_INVALID', `vif ${devid} of ${name}: xeno needs an IPv4 address in ip=`);
    if (mode === 'route' && !specIps.length) throw new XenoError('CONFIG_INVALID', `vif ${devid} of ${name}: vif-route needs the guest's address (ip=)`);
    if (mode === 'nat' && specIps.length > 1) throw new XenoError('CONFIG_INVALID', `vif ${devid} of ${name}: a vif-nat guest has one address`);
    if (mode === 'nat' && specIps.length) allocateNatSlot(this.config.natSubnet, specIps[0], new Map(), '');
    const st: VifState = {
      domid, devid, name, ifname, mac, mode, model: vif.model, ips: specIps, dhcp: specIps.length === 0,
      rate: vif.rate, mtu: vif.mtu, ethIndex: opts.ethIndex ?? prev?.ethIndex ?? devid,
    };
    try {
      if (!this.started) await this.startHostLocked();
      switch (mode) {
        case 'bridge': {
          const bridge = vif.bridge ?? this.bridgeName;
          await plugBridgeVif(this.ctx, { ifname, alias, bridge, mtu: vif.mtu });
          st.bridge = bridge;
          if (specIps.length) {
            const g = await bridgeGuestNet(this.ctx, bridge, specIps[0]!);
            st.guestArg = `${specIps[0]}/${g.prefix}${g.gateway ? `:${g.gateway}` : ''}`;
          } else {
            st.guestArg = 'dhcp';
          }
          break;
        }
        case 'nat': {
          await this.ensureForwarding(this.files.host()!);
          const owner = `${name} vif ${devid}`;
          const used = new Map<number, string>();
          for (const v of this.files.vifs()) {
            if (v.mode === 'nat' && v.slot !== undefined && !(v.domid === domid && v.devid === devid)) used.set(v.slot, `${v.name} vif ${v.devid}`);
          }
          const slot =
            !specIps.length && prev?.mode === 'nat' && prev.slot !== undefined && !used.has(prev.slot)
              ? natSlot(parseCidr4(this.config.natSubnet), prev.slot)
              : allocateNatSlot(this.config.natSubnet, specIps[0], used, owner, preferredNatSlot(this.config.natSubnet, name, devid));
          st.slot = slot.index;
          st.hostAddr = `${slot.host}/${slot.prefix}`;
          st.ips = [slot.guest];
          this.files.saveVif(st);
          await plugNatVif(this.ctx, { ifname, alias, slot, mtu: vif.mtu });
          st.guestArg = natGuestNet(slot, !st.dhcp);
          break;
        }
        case 'route': {
          await this.ensureForwarding(this.files.host()!);
          const uplink = await findUplink(this.ctx, this.mode === 'route' ? this.args.netdev : undefined);
          st.uplink = uplink.dev;
          st.hostAddr = `${uplink.address}/32`;
          this.files.saveVif(st);
          await plugRouteVif(this.ctx, { ifname, alias, ips: specIps, uplink, mtu: vif.mtu });
          st.guestArg = routeGuestNet(specIps[0]!, uplink);
          break;
        }
      }
      this.files.saveVif(st);
      await this.fw.plugVif({ ifname, mode, mac, ips: st.ips });
      const ifbAlias = ownerAlias(this.instance, 'ifb', domid, devid);
      if (vif.rate) {
        st.ifb = ifbNameFor(ifname);
        this.files.saveVif(st);
        await applyRate(this.ctx, ifname, st.ifb, ifbAlias, vif.rate);
      } else if (prev?.ifb) {
        await removeRate(this.ctx, ifname, prev.ifb, ifbAlias);
      }
      this.files.saveVif(st);
      if (mode === 'nat' || prev?.mode === 'nat') await this.syncDhcp();
    } catch (e) {
      // A fresh vif is undone; an existing one (re-adoption) is left for its domain's teardown.
      if (fresh) {
        await this.unplugOne(st).catch(() => undefined);
        await this.stopIfIdle().catch(() => undefined);
      }
      throw e;
    }
    this.log?.info({ domid, devid, ifname, mode, mac, ips: st.ips }, 'vif plugged');
    return {
      nic: { devid, ifname, mac, model: nicModel(vif.model) },
      guestArg: st.guestArg ? `xeno.net=eth${st.ethIndex}:${st.guestArg}` : undefined,
    };
  }

  /** Removes one vif's backend, or all of a domain's; what is already gone is not an error. */
  /**
   * `mayHaveLinks: false` (a stopped domain with no vif configured and none recorded) skips the scan
   * for unrecorded links: it costs an `ip link` run, most of a destroy's time in xenod.
   */
  unplug(domid: number, devid?: number, opts: { mayHaveLinks?: boolean } = {}): Promise<void> {
    return this.exclusive(async () => {
      const states = this.files.vifs(domid).filter((v) => devid === undefined || v.devid === devid);
      for (const st of states) await this.unplugOne(st);
      // Leftovers without a state file (a crash between creating and recording).
      const scan = opts.mayHaveLinks !== false || states.length > 0;
      for (const l of scan ? await ownedLinks(this.ctx, this.instance, domid) : []) {
        if (devid === undefined || l.devid === devid) await linkDel(this.ctx, l.ifname);
      }
      if (states.some((s) => s.mode === 'nat')) await this.syncDhcp();
      await this.stopIfIdle();
    });
  }

  private async unplugOne(st: VifState): Promise<void> {
    await this.fw.unplugVif(st.ifname);
    if (st.mode === 'route') await unplugRouteVif(this.ctx, st.ips, st.uplink);
    if (st.ifb) await removeRate(this.ctx, st.ifname, st.ifb, ownerAlias(this.instance, 'ifb', st.domid, st.devid));
    await deleteOwnedLink(this.ctx, st.ifname, ownerAlias(this.instance, 'vif', st.domid, st.devid));
    this.files.removeVif(st.domid, st.devid);
    this.log?.info({ domid: st.domid, devid: st.devid, ifname: st.ifname }, 'vif unplugged');
  }

  /** Re-plugs a domain's recorded vifs (xenod restarted and re-adopted its QEMU). */
  readopt(domid: number, name: string): Promise<void> {
    return this.exclusive(async () => {
      for (const st of this.files.vifs(domid)) {
        await this.plugLocked(domid, name, specOf(st), { ethIndex: st.ethIndex });
      }
    });
  }

  private async syncDhcp(): Promise<void> {
    const entries: DhcpEntry[] = [];
    const pool = parseCidr4(this.config.natSubnet);
    for (const v of this.files.vifs()) {
      if (v.mode !== 'nat' || v.slot === undefined || !v.ips[0]) continue;
      const slot = natSlot(pool, v.slot);
      entries.push({ ifname: v.ifname, mac: v.mac, ip: v.ips[0], network: slot.network, prefix: slot.prefix });
    }
    await this.dnsmasq.sync(entries);
  }

  // ---- queries --------------------------------------------------------------------------------

  /** A domain's vifs as recorded (network-list). */
  list(domid: number): VifState[] {
    return this.files.vifs(domid);
  }

  /** Every vif of this instance. */
  all(): VifState[] {
    return this.files.vifs();
  }

  /** The rules of each of a domain's vif chains (`xeno network-rules DOM`). */
  async rules(domid: number): Promise<VifRules[]> {
    const out: VifRules[] = [];
    for (const v of this.files.vifs(domid)) {
      const family = Firewall.familyOf(v.mode);
      out.push({
        devid: v.devid, ifname: v.ifname, mode: v.mode, family, table: this.fw.table, chain: v.ifname,
        rules: (await this.fw.chainRules(v.mode, v.ifname)) ?? [],
      });
    }
    return out;
  }

  // ---- toolstack hooks ------------------------------------------------------------------------

  hooks(): Partial<DomainHooks> {
    return {
      beforeLaunch: async (rec: DomainRecord) => {
        const nics: NicBackend[] = [];
        const args: string[] = [];
        try {
          for (const [i, vif] of rec.config.vifs.entries()) {
            const r = await this.plug(rec.id, rec.name, vif, { ethIndex: i });
            nics.push(r.nic);
            if (r.guestArg) args.push(r.guestArg);
          }
        } catch (e) {
          await this.unplug(rec.id).catch(() => undefined);
          throw e;
        }
        const config = args.length && rec.config.kernel ? withGuestArgs(rec.config, args) : undefined;
        return config && config !== rec.config ? { nics, config } : { nics };
      },
      afterAdopt: async (rec: DomainRecord, vm: Vm) => {
        try {
          // A vif whose NIC QEMU does not have (a hot-plug or unplug cut short by a crash) goes.
          const inQemu = await vifsInQemu(vm);
          for (const st of this.files.vifs(rec.id)) if (!inQemu.has(st.devid)) await this.unplug(rec.id, st.devid);
          await this.readopt(rec.id, rec.name);
        } catch (e) {
          this.log?.error({ err: e, domid: rec.id }, 'cannot re-adopt the network of a domain');
        }
      },
      afterStop: async (rec: DomainRecord) => {
        try {
          await this.unplug(rec.id, undefined, { mayHaveLinks: rec.config.vifs.length > 0 });
        } catch (e) {
          this.log?.error({ err: e, domid: rec.id }, 'cannot remove the network of a domain');
        }
      },
      // Vifs (state files or owned links) of domains that are gone: a daemon died before afterStop.
      sweep: async (known: DomainRecord[]) => {
        const ids = new Set(known.map((r) => r.id));
        const gone = new Set<number>();
        for (const v of this.files.vifs()) if (!ids.has(v.domid)) gone.add(v.domid);
        for (const l of await ownedLinks(this.ctx, this.instance).catch(() => [])) if (!ids.has(l.domid)) gone.add(l.domid);
        for (const domid of gone) {
          this.log?.info({ domid }, 'removing the vifs of a domain that is gone');
          await this.unplug(domid).catch((e: unknown) => this.log?.error({ err: e, domid }, 'cannot remove the network of a gone domain'));
        }
      },
    };
  }
}

/** The spec a recorded vif was plugged with (for re-plugging it). */
export function specOf(st: VifState): VifSpec {
  const v: VifSpec = { devid: st.devid, mac: st.mac, script: `vif-${st.mode}`, vifname: st.ifname };
  if (!st.dhcp) v.ip = st.ips.join(' ');
  if (st.bridge) v.bridge = st.bridge;
  if (st.rate) v.rate = st.rate;
  if (st.model) v.model = st.model;
  if (st.mtu) v.mtu = st.mtu;
  return v;
}
