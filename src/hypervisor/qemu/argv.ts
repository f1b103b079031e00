/**
 * Pure: the QEMU command line for one domain. No I/O, so every flag is unit-testable and the
 * benchmark can start "raw QEMU" with exactly the argv xeno would use.
 *
 * Disk naming convention (stable; hot-plug, block-list, snapshots and storage migration rely on it):
 *   protocol node  file-<vdev>   driver file, or host_device for a block device
 *   format node    disk-<vdev>   driver raw / qcow2 / vpc ... on top of file-<vdev>
 *   guest device   <vdev>        virtio-blk-pci (drive=disk-<vdev>, serial=<vdev>), or ide-cd for a
 *                                cdrom; an empty cdrom tray is `ide-cd,id=<vdev>` with no drive and
 *                                no nodes, and cd-insert adds file-/disk-<vdev> and inserts them.
 * Every disk is `-blockdev` JSON (never -drive), built by disk-argv.ts, the same objects the QMP
 * blockdev-add of a hot-plug sends.
 */
import { isIP } from 'node:net';
import { disksInGuestOrder, translateDiskNames } from '../../config/disk-order.js';
import { BOOT_ORDER_RE, effectiveCmdline, type DomainConfig } from '../../model/domain-config.js';
import { XenoError } from '../../common/errors.js';
import type { Accel } from '../backend.js';
import { defaultFacts, deviceOpt, diskBlockdevs, diskDevice, type DiskHostFacts } from './disk-argv.js';
import { hostCpuFlags, tlsPskPriority } from './tls-priority.js';

export interface NicBackend {
  devid: number;
  /** Host-side tap device, e.g. vif3.0. */
  ifname: string;
  mac: string;
  model?: string;
}

export interface QemuPaths {
  /** RUNDIR/qemu: the one directory the QEMU user may write (its sockets and pid file). */
  dir: string;
  qmp: string;
  serial: string;
  /** The virtio console's socket (hvc0). */
  hvc: string;
  pidfile: string;
  /** Where QEMU listens for a restore stream (`migrate-incoming unix:`). */
  restore: string;
  /** The guest agent's virtio-serial port (org.qemu.guest_agent.0), a socket QEMU listens on. */
  qga: string;
}

export interface QemuArgvInput {
  domid: number;
  config: DomainConfig;
  uuid: string;
  machineType: string;
  accel: Accel;
  paths: Pick<QemuPaths, 'qmp' | 'serial' | 'hvc' | 'qga' | 'pidfile'>;
  nics: NicBackend[];
  /** Start with vcpus stopped (`-S`): restore/incoming and `create -p`. */
  startPaused?: boolean;
  /** Wait for the migration stream (`-incoming defer`, then migrate-incoming over QMP). */
  incoming?: boolean;
  /** TCG translation-buffer size in MiB; bounds QEMU's own overhead under emulation. */
  tbSizeMb?: number;
  /** With incoming: TLS-PSK credentials for the migration stream (DIR/keys.psk), QOM id xenomig0. */
  tlsPskDir?: string;
  /** Per vdev: the backend facts the toolstack probed (driver, cache, aio); absent = defaultFacts. */
  diskFacts?: ReadonlyMap<string, DiskHostFacts>;
}

/**
 * Boot indexes in Xen's letter order (hvm only; `boot`, default "cd"): c the disks in vdev order,
 * d the cdroms, n the NICs. Never a `-boot` string: each device gets its own bootindex.
 */
export function bootIndexes(c: DomainConfig, nicDevids: number[]): Map<string, number> {
  const out = new Map<string, number>();
  if (c.type !== 'hvm' || c.kernel) return out;
  const order = c.boot ?? 'cd';
  if (!BOOT_ORDER_RE.test(order)) throw new XenoError('CONFIG_INVALID', `boot ${JSON.stringify(order)} is not Xen boot letters (c, d, n)`);
  let next = 0;
  for (const letter of order) {
    if (letter === 'c') for (const { disk } of disksInGuestOrder(c.disks)) out.set(disk.vdev, next++);
    if (letter === 'd') c.disks.forEach((d) => d.devtype === 'cdrom' && out.set(d.vdev, next++));
    if (letter === 'n') for (const devid of nicDevids) out.set(`net${devid}`, next++);
  }
  return out;
}

const bootOpt = (boot: Map<string, number>, id: string): string => (boot.has(id) ? `,bootindex=${boot.get(id)}` : '');

/**
 * virtio-blk for disks (xenblk's counterpart), put on the bus in vdev order so the guest's vda is
 * the config's xvda (config/disk-order.ts); an IDE cdrom for devtype=cdrom (empty allowed).
 */
function diskArgs(c: DomainConfig, boot: Map<string, number>, facts?: ReadonlyMap<string, DiskHostFacts>): string[] {
  const out: string[] = [];
  const ordered = [...c.disks.filter((d) => d.devtype === 'cdrom'), ...disksInGuestOrder(c.disks).map((x) => x.disk)];
  for (const d of ordered) {
    const f = facts?.get(d.vdev) ?? defaultFacts(d, c.diskCache);
    if (d.target) for (const node of diskBlockdevs(d, f)) out.push('-blockdev', JSON.stringify(node));
    out.push('-device', deviceOpt(diskDevice(d, f, boot.get(d.vdev))));
  }
  return out;
}

/** A virtio console (hvc0) beside the serial line: a guest booted with console=hvc0 talks there. */
function virtconsoleArgs(paths: Pick<QemuPaths, 'hvc'>): string[] {
  return [
    '-device', 'virtio-serial-pci,id=vserial0',
    '-chardev', `socket,id=hvc0,path=${escapeOpt(paths.hvc)},server=on,wait=off`,
    '-device', 'virtconsole,chardev=hvc0,id=hvc0dev',
  ];
}

/**
 * The guest agent's port (org.qemu.guest_agent.0) on a virtio-serial bus of its own, so hvc0 keeps
 * port 0 of vserial0 (a virtconsole) and the agent's channel never shares a bus id with it.
 */
function guestAgentArgs(paths: Pick<QemuPaths, 'qga'>): string[] {
  return [
    '-chardev', `socket,id=qga0,path=${escapeOpt(paths.qga)},server=on,wait=off`,
    '-device', 'virtio-serial-pci,id=qgaserial0',
    '-device', 'virtserialport,bus=qgaserial0.0,chardev=qga0,id=qga0port,name=org.qemu.guest_agent.0',
  ];
}

/** `-vnc` from validated values; the password is set over QMP after start (never in argv). */
export function vncArgs(c: DomainConfig): string[] {
  const v = c.vnc;
  if (!v) return ['-display', 'none'];
  if (isIP(v.listen) === 0) throw new XenoError('CONFIG_INVALID', `vnc listen ${JSON.stringify(v.listen)} is not an IP address`);
  const host = isIP(v.listen) === 6 ? `[${v.listen}]` : v.listen;
  return ['-display', 'none', '-vga', 'std', '-vnc', `${host}:${v.display === undefined ? '0,to=99' : count('vnc display', v.display, 0)}${v.password !== undefined ? ',password=on' : ''}`];
}

/** Under KVM the config's named model (a pool's levelled one) or `host`; TCG emulates qemu64. */
function cpuModel(accel: Accel, c: DomainConfig): string {
  return accel === 'kvm' ? plainOpt('cpu model', c.cpuModel ?? 'host') : 'qemu64';
}

/**
 * Vcpus 1..N-1 as cpu devices with the ids and topology vcpu-set's hot-plug gives them (one core
 * each), so a QEMU started from a config has exactly the devices of one whose vcpus were
 * hot-plugged: a save file or a migration stream from either loads into the other.
 */
export function vcpuDeviceArgs(c: DomainConfig, accel: Accel): string[] {
  const out: string[] = [];
  for (let k = 1; k < c.vcpus; k++) out.push('-device', `${cpuModel(accel, c)}-x86_64-cpu,id=vcpu${k},socket-id=0,core-id=${k},thread-id=0`);
  return out;
}

/**
 * Structural protection behind the config validator: a value put into an option string without
 * escaping (names, ids, vdev, NIC fields, machine type) must be a plain token.
 */
export function plainOpt(what: string, v: string): string {
  if (!/^[A-Za-z0-9_.:-]+$/.test(v)) throw new XenoError('CONFIG_INVALID', `${what} ${JSON.stringify(v)} cannot go into a QEMU option string`);
  return v;
}

/** A path given to QEMU as an option value: escaped for commas, and never with control characters. */
function pathOpt(what: string, v: string): string {
  if (/[\u0000-\u001f\u007f]/.test(v)) throw new XenoError('CONFIG_INVALID', `${what} ${JSON.stringify(v)} contains a control character`);
  return escapeOpt(v);
}

/** QEMU's option syntax doubles commas inside values. */
export function escapeOpt(v: string): string {
  return v.replace(/,/g, ',,');
}

/** A whole number for the command line (the validator bounds it; this keeps a non-number out). */
function count(what: string, n: number, min = 1): number {
  if (!Number.isSafeInteger(n) || n < min) throw new XenoError('CONFIG_INVALID', `${what} ${String(n)} is not a whole number of at least ${min}`);
  return n;
}

export function buildQemuArgv(input: QemuArgvInput): string[] {
  const { config: c, paths } = input;
  const argv: string[] = [
    '-name', `guest=${escapeOpt(c.name)},debug-threads=on`,
    '-uuid', plainOpt('uuid', input.uuid),
    '-machine', plainOpt('machine type', input.machineType),
    '-accel', input.accel === 'tcg' && input.tbSizeMb ? `tcg,tb-size=${input.tbSizeMb}` : input.accel,
    '-cpu', cpuModel(input.accel, c),
    '-m', `size=${count('maxmem', c.maxmem)}M`,
    '-smp', `1,sockets=1,cores=${count('maxvcpus', c.maxvcpus)},threads=1,maxcpus=${c.maxvcpus}`,
    '-nodefaults', '-no-user-config', ...vncArgs(c),
    '-sandbox', 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny',
    '-qmp', `unix:${escapeOpt(paths.qmp)},server=on,wait=off`,
    '-chardev', `socket,id=serial0,path=${escapeOpt(paths.serial)},server=on,wait=off`,
    '-serial', 'chardev:serial0',
    ...virtconsoleArgs(paths),
    '-pidfile', paths.pidfile,
    // The daemon decides what a guest's poweroff, reboot or panic means (on_poweroff & co), so QEMU
    // only stops and reports it; this also works while xenod is down: the guest waits, frozen.
    '-action', 'reboot=shutdown,shutdown=pause,panic=pause',
    // Both a guest poweroff and a guest reset end in runstate `shutdown` (reboot=shutdown); only
    // the poweroff goes through qemu_system_shutdown_request, whose trace line in QEMU's log
    // (stderr) tells a daemon that was down which of the two happened (QemuVm.stopReason).
    '-trace', 'enable=qemu_system_shutdown_request',
    '-device', 'pvpanic',
    '-device', 'virtio-balloon-pci,id=balloon0,free-page-reporting=on',
    ...guestAgentArgs(paths),
  ];
  if (c.kernel) {
    argv.push('-kernel', c.kernel);
    if (c.ramdisk) argv.push('-initrd', c.ramdisk);
    argv.push('-append', guestCmdline(c));
  }
  if (count('vcpus', c.vcpus) > c.maxvcpus) throw new XenoError('CONFIG_INVALID', `vcpus ${c.vcpus} is above maxvcpus ${c.maxvcpus}`);
  argv.push(...vcpuDeviceArgs(c, input.accel));
  const boot = bootIndexes(c, input.nics.map((n) => n.devid));
  argv.push(...diskArgs(c, boot, input.diskFacts));
  for (const nic of input.nics) {
    const devid = count('vif devid', nic.devid, 0);
    argv.push('-netdev', `tap,id=net${devid},ifname=${plainOpt('vif name', nic.ifname)},script=no,downscript=no`);
    argv.push('-device', `${plainOpt('NIC model', nic.model ?? 'virtio-net-pci')},netdev=net${devid},mac=${plainOpt('mac', nic.mac)},id=nic${devid}${bootOpt(boot, `net${devid}`)}`);
  }
  if (input.startPaused || input.incoming) argv.push('-S');
  if (input.incoming && input.tlsPskDir) argv.push('-object', `tls-creds-psk,id=xenomig0,endpoint=server,dir=${escapeOpt(input.tlsPskDir)},priority=${tlsPskPriority(hostCpuFlags())}`);
  if (input.incoming) argv.push('-incoming', 'defer');
  return argv;
}

/**
 * The kernel command line: the config's with Xen disk names translated to virtio's
 * (config/disk-order.ts), plus the serial console and hostname the guest reads.
 */
export function guestCmdline(c: DomainConfig): string {
  const parts: string[] = [];
  const base = translateDiskNames(effectiveCmdline(c) ?? '', c.disks).cmdline;
  if (!/\bconsole=/.test(base)) parts.push('console=ttyS0');
  if (base) parts.push(base);
  // xeno.hostname= for xeno's test guest, systemd.hostname= for a real distribution (systemd >= 233).
  if (c.hostname && !/\b(xeno\.|systemd\.)?hostname=/.test(base)) parts.push(`xeno.hostname=${c.hostname}`, `systemd.hostname=${c.hostname}`);
  return parts.join(' ');
}
