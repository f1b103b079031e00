/**
 * What the network manager set up, kept as small JSON files under `<stateDir>/network/` so that a
 * restarted xenod re-adopts instead of duplicating, and an explicit stop can undo exactly what was
 * done (the physical interface's addresses and routes, the sysctls it changed).
 */
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { NetworkMode } from '../../model/daemon-config.js';
import type { VifMode } from './firewall.js';
import type { IpRoute } from './ip.js';

export interface MovedAddress {
  cidr: string;
  broadcast?: string;
}

export interface BridgeHostState {
  bridge: string;
  /** xeno created the bridge (and deletes it on stop). */
  created: boolean;
  netdev?: string;
  /** What was on the physical interface when it was enslaved. */
  moved?: { addrs: MovedAddress[]; routes: IpRoute[] };
}

export interface HostState {
  version: 1;
  mode: NetworkMode;
  /** The network-script line this was set up for. */
  script: string;
  natSubnet: string;
  bridge?: BridgeHostState;
  /** Previous values of the sysctls xeno changed (restored on stop). */
  sysctls: Record<string, string>;
}

export interface VifState {
  domid: number;
  devid: number;
  /** Domain name (the MAC default derives from it). */
  name: string;
  ifname: string;
  mac: string;
  mode: VifMode;
  model?: string;
  /** Guest IPv4 addresses (the spec's ip=, or the NAT slot's). */
  ips: string[];
  /** The spec asked for DHCP (no ip=). */
  dhcp: boolean;
  bridge?: string;
  /** Host-side address on the vif, as `a.b.c.d/n` (nat, route). */
  hostAddr?: string;
  /** route: the uplink the guest's addresses are proxied on. */
  uplink?: string;
  /** nat: /30 slot index in the pool. */
  slot?: number;
  rate?: string;
  mtu?: number;
  ifb?: string;
  /** The `xeno.net=` argument for the guest, if any. */
  guestArg?: string;
  /** Interface index in the guest (ethN). */
  ethIndex?: number;
}

export class NetStateFiles {
  constructor(readonly dir: string) {}

  private get vifDir(): string {
    return path.join(this.dir, 'vifs');
  }

  private write(file: string, data: unknown): void {
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const tmp = `${file}.tmp-${process.pid}`;
    writeFileSync(tmp, JSON.stringify(data, null, 2) + '\n', { mode: 0o600 });
    renameSync(tmp, file);
  }

  private read<T>(file: string): T | undefined {
    try {
      return JSON.parse(readFileSync(file, 'utf8')) as T;
    } catch {
      return undefined;
    }
  }

  host(): HostState | undefined {
    return this.read<HostState>(path.join(this.dir, 'host.json'));
  }

  saveHost(h: HostState): void {
    this.write(path.join(this.dir, 'host.json'), h);
  }

  removeHost(): void {
    rmSync(path.join(this.dir, 'host.json'), { force: true });
  }

  private vifFile(domid: number, devid: number): string {
    return path.join(this.vifDir, `${domid}.${devid}.json`);
  }

  vif(domid: number, devid: number): VifState | undefined {
    return this.read<VifState>(this.vifFile(domid, devid));
  }

  saveVif(v: VifState): void {
    this.write(this.vifFile(v.domid, v.devid), v);
  }

  removeVif(domid: number, devid: number): void {
    rmSync(this.vifFile(domid, devid), { force: true });
  }

  vifs(domid?: number): VifState[] {
    let names: string[];
    try {
      names = readdirSync(this.vifDir);
    } catch {
      return [];
    }
    const out: VifState[] = [];
    for (const n of names) {
      if (!/^\d+\.\d+\.json$/.test(n)) continue;
      const v = this.read<VifState>(path.join(this.vifDir, n));
      if (v && (domid === undefined || v.domid === domid)) out.push(v);
    }
    return out.sort((a, b) => a.domid - b.domid || a.devid - b.devid);
  }
}
