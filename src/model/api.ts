/** Shapes exchanged between xenod's HTTP API and its clients (the CLI, tools, the web page). */
import type { DomainConfig } from './domain-config.js';
import type { DomainState } from './domain-state.js';

export interface DomainInfo {
  id: number;
  name: string;
  uuid: string;
  state: DomainState;
  /** xm's `rbpscd` flags, e.g. `r-----`. */
  stateFlags: string;
  /** MiB: the current balloon target (Domain-0: what the guests leave to the host). */
  memory: number;
  maxmem: number;
  vcpus: number;
  maxvcpus: number;
  /** Seconds of CPU the domain's vcpus have used. */
  cpuTime: number;
  /** QEMU's pid (absent for Domain-0). */
  pid?: number;
  /** Seconds since the domain started. */
  uptime: number;
  startTime: number;
  machineType?: string;
  accel?: string;
  /** Restarts xenod made for the guest (on_reboot/on_crash = restart); absent when none. */
  restarts?: number;
  /** What the guest did before its last restart: reboot, crash or poweroff. */
  lastRestartReason?: string;
  /** Epoch seconds of the last restart. */
  lastRestartAt?: number;
  /** A restart delayed by the back-off is due at this epoch second. */
  restartDueAt?: number;
  /** The restart limit left the domain stopped: why, and where to look. */
  restartStopped?: string;
  /** Its QEMU runs but has not answered QMP since xenod started (retried in the background). */
  qmp?: 'unresponsive';
  /** Where its VNC display listens (`127.0.0.1:5900`), when it has one. */
  vnc?: string;
  /** A vcpu was unplugged since its boot: QEMU < 8 under TCG can then neither save nor migrate it. */
  unpluggedSinceBoot?: boolean;
}

export interface DomainDetail extends DomainInfo {
  config: DomainConfig;
  /** The balloon's actual size reported by the guest, MiB. */
  balloonActual?: number;
  /** What the guest agent (qemu-guest-agent) reports; absent when no agent answers. */
  guest?: GuestAgentInfo;
}

export interface GuestAgentInfo {
  /** The guest's addresses (loopback and IPv6 link-local left out). */
  addresses: string[];
  /** e.g. "Debian GNU/Linux 12 (bookworm)". */
  os?: string;
  kernel?: string;
}

export interface HostInfo {
  host: string;
  release: string;
  machine: string;
  nr_cpus: number;
  /** MiB. */
  total_memory: number;
  free_memory: number;
  dom0_min_mem: number;
  accel: 'kvm' | 'tcg';
  accel_reason: string;
  qemu_version: string;
  machine_type: string;
  xeno_version: string;
  state_dir: string;
  network_mode: string;
}

export interface CreateRequest {
  /** Either a ready config... */
  config?: DomainConfig;
  /** ...or the text of an xl.cfg / xm file, parsed by the daemon (errors name cfgFile:line:col). */
  cfgText?: string;
  cfgFile?: string;
  /** `key=value` overrides as given after the file on `xeno create`. */
  overrides?: string[];
  /** Directory relative paths in the file are resolved against (the CLI's cwd). */
  cwd?: string;
  paused?: boolean;
  dryRun?: boolean;
}

export interface CreateResponse {
  domain?: DomainInfo;
  /** ms from the request reaching xenod to QEMU being spawned, and to the create being done. */
  timings?: { requestToSpawnMs: number; requestToDoneMs: number };
  config: DomainConfig;
  warnings: string[];
}

export interface ApiError {
  error: { code: string; message: string; details?: Record<string, unknown> };
}

/** One guest interface and its host backend (`xeno network-list`). */
export interface VifListEntry {
  devid: number;
  ifname: string;
  mac: string;
  mode: string;
  /** Guest addresses (nat: the /30's guest address, leased by DHCP unless ip= was given). */
  ips: string[];
  dhcp: boolean;
  bridge?: string;
  hostAddr?: string;
  rate?: string;
  model: string;
  /** What the guest should configure on its side (`ADDR/PREFIX:GATEWAY` or `dhcp`). */
  guestNet?: string;
}

export interface NetworkListResult {
  domid: number;
  name: string;
  vifs: VifListEntry[];
}

/** The nftables chain of one vif, which an admin may add rules to (`xeno network-rules`). */
export interface VifRules {
  devid: number;
  ifname: string;
  mode: 'bridge' | 'nat' | 'route';
  family: 'inet' | 'bridge';
  table: string;
  chain: string;
  rules: string[];
}
