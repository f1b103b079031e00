/**
 * The normalised domain configuration: what an xl.cfg / xm file means once parsed.
 * One place defines it (as libxl_types.idl does); fields are added, never removed.
 * Sizes are MiB, like the config file's `memory`/`maxmem`.
 */

export type VmType = 'pv' | 'pvh' | 'hvm';

export const LIFECYCLE_ACTIONS = [
  'destroy',
  'restart',
  'rename-restart',
  'preserve',
  'coredump-destroy',
  'coredump-restart',
] as const;
export type LifecycleAction = (typeof LIFECYCLE_ACTIONS)[number];

export const DISK_FORMATS = ['raw', 'qcow', 'qcow2', 'vhd', 'qed'] as const;
export type DiskFormat = (typeof DISK_FORMATS)[number];

/**
 * QEMU's host cache modes (`cache=` per disk in its spec, or `disk_cache` per guest). Absent =
 * none where the host filesystem takes O_DIRECT, else writeback. Only none and directsync are
 * safe for a live migration on shared storage (libvirt's rule); read-only disks are always safe.
 */
export const CACHE_MODES = ['none', 'writeback', 'writethrough', 'directsync', 'unsafe'] as const;
export type CacheMode = (typeof CACHE_MODES)[number];

export interface DiskSpec {
  /** Absolute path of the image or block device (`phy:hda1` becomes `/dev/hda1`). */
  target: string;
  format: DiskFormat;
  /** Guest device name as written (xvda, hda, sdb...). */
  vdev: string;
  access: 'ro' | 'rw';
  devtype: 'disk' | 'cdrom';
  /** Host cache mode of this disk (overrides the guest's diskCache). */
  cache?: CacheMode;
}

export interface VifSpec {
  /** Index of the interface in the guest (the N of vifDOMID.N). */
  devid: number;
  mac?: string;
  bridge?: string;
  ip?: string;
  /** vif-bridge | vif-nat | vif-route (the daemon's vif-script when absent). */
  script?: string;
  vifname?: string;
  gatewaydev?: string;
  /** xl rate syntax, e.g. `10Mb/s` or `1MB/s@20ms`. */
  rate?: string;
  model?: string;
  type?: string;
  mtu?: number;
}

/** Xen's boot letters (hvm): c the disks, d the cdroms, n the network; in order of preference. */
export const BOOT_ORDER_RE = /^(?!.*(.).*\1)[cdn]{1,3}$/;

/** A VNC display (xl's vnc/vnclisten/vncdisplay/vncpasswd, or vfb = ['vnc=1,...']). */
export interface VncSpec {
  /** IP address QEMU listens on (default 127.0.0.1). */
  listen: string;
  /** The display number: TCP port 5900 + display; absent = the first free one from 0 (vncunused). */
  display?: number;
  /** VNC authentication (at most 8 characters, the protocol's DES key); required beyond loopback. */
  password?: string;
}

export interface DomainConfig {
  name: string;
  uuid?: string;
  type: VmType;
  /** MiB the guest starts with (the balloon target). */
  memory: number;
  /** MiB the guest may grow to; QEMU is started with this much RAM. */
  maxmem: number;
  vcpus: number;
  maxvcpus: number;
  /** Host CPU list the vcpus are pinned to at create time (`0-3,^1`), absent = any. */
  cpus?: string;
  /**
   * The named QEMU CPU model under KVM (absent: `host`); a pooled host sets its pool's levelled
   * model (docs/pool.md) so a guest migrates to any host of the pool. Under TCG always qemu64.
   */
  cpuModel?: string;
  /** Credit-scheduler weight (1..65535, default 256) and cap (% of one CPU, 0 = none). */
  cpuWeight?: number;
  cap?: number;
  kernel?: string;
  ramdisk?: string;
  root?: string;
  extra?: string;
  /** Explicit kernel command line; overrides root and extra when set. */
  cmdline?: string;
  hostname?: string;
  /**
   * `bootloader = "pygrub"`: the kernel, initrd and command line are read from the guest's own disk
   * (its grub.cfg / extlinux.conf / menu.lst) at every start. Ignored when `kernel` is set.
   */
  bootloader?: 'pygrub';
  /** pygrub's own flags: --entry=N|TITLE, --kernel=PATH, --ramdisk=PATH, --args=ARGS. */
  bootloaderArgs?: string[];
  disks: DiskSpec[];
  vifs: VifSpec[];
  onPoweroff: LifecycleAction;
  onReboot: LifecycleAction;
  onCrash: LifecycleAction;
  /** Restarts allowed within the daemon's xeno-restart-window before the guest is left stopped (0 = no limit); absent = xeno-restart-limit. */
  restartLimit?: number;
  /** Pool HA (`ha = 1`): restarted on another host when its host fails (docs/pool-ha.md). */
  ha?: boolean;
  /** `ha_restart_priority`: higher restarts first after a host failure (0..1000, default 0). */
  haRestartPriority?: number;
  /** hvm: the boot order in Xen's letters (`boot = "dc"`), default disks first. */
  boot?: string;
  vnc?: VncSpec;
  /** Host cache mode of every disk without its own `cache=` (xl.cfg `disk_cache`). */
  diskCache?: CacheMode;
}

export const DOMAIN_NAME_RE = /^[A-Za-z0-9_.-]{1,64}$/;

/** The kernel command line a PV-style guest boots with, as xl builds it. */
export function effectiveCmdline(c: DomainConfig): string | undefined {
  if (c.cmdline !== undefined) return c.cmdline;
  const parts: string[] = [];
  if (c.root) parts.push(`root=${c.root}`);
  if (c.extra) parts.push(c.extra);
  return parts.length ? parts.join(' ') : undefined;
}
