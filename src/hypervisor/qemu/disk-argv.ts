/**
 * Pure: a disk's QEMU block nodes and guest device, as one set of objects used both for the command
 * line (`-blockdev <json>`) and for hot-plug (QMP blockdev-add / device_add), so a disk attached
 * live is exactly the disk a restarted guest gets. Naming convention (see the top of argv.ts):
 * protocol node `file-<vdev>`, format node `disk-<vdev>`, guest device id `<vdev>`.
 */
import { XenoError } from '../../common/errors.js';
import { vdevIndex } from '../../config/disk-order.js';
import type { CacheMode, DiskSpec } from '../../model/domain-config.js';

export type AioMode = 'io_uring' | 'native' | 'threads';

/** What the host knows about one disk's backend (probed by the toolstack; argv does no I/O). */
export interface DiskHostFacts {
  /** The target is a block device (driver host_device) rather than a file. */
  hostDevice: boolean;
  cache: CacheMode;
  aio: AioMode;
}

export const fileNodeName = (vdev: string): string => `file-${vdev}`;
export const formatNodeName = (vdev: string): string => `disk-${vdev}`;

/** A vdev as a node name / device id: QEMU ids are letters, digits, - . _ and start with a letter. */
export function vdevId(vdev: string): string {
  if (!/^[a-z][a-z0-9]{1,15}$/.test(vdev)) throw new XenoError('CONFIG_INVALID', `vdev ${JSON.stringify(vdev)} cannot go into a QEMU option string or node name`);
  return vdev;
}

/** The defaults when the toolstack gives no facts (unit tests, the raw-QEMU benchmark baseline). */
export function defaultFacts(d: DiskSpec, guestCache?: CacheMode): DiskHostFacts {
  return { hostDevice: false, cache: d.cache ?? guestCache ?? 'writeback', aio: 'threads' };
}

/** cache= as QEMU's -drive spelled it, split into the node's cache.* and the device's write-cache. */
export function cacheFlags(mode: CacheMode): { direct: boolean; noFlush: boolean; writeCache: boolean } {
  return {
    direct: mode === 'none' || mode === 'directsync',
    noFlush: mode === 'unsafe',
    writeCache: mode !== 'writethrough' && mode !== 'directsync',
  };
}

const qemuFormat = (f: string): string => (f === 'vhd' ? 'vpc' : f);

function targetPath(v: string): string {
  if (!v.startsWith('/')) throw new XenoError('CONFIG_INVALID', `disk target ${JSON.stringify(v)} is not an absolute path`);
  if (/[\u0000-\u001f\u007f]/.test(v)) throw new XenoError('CONFIG_INVALID', `disk target ${JSON.stringify(v)} contains a control character`);
  return v;
}

export type BlockdevOptions = Record<string, unknown>;

/** The protocol node then the format node (blockdev-add order; blockdev-del is the reverse). */
export function diskBlockdevs(d: DiskSpec, facts: DiskHostFacts): [BlockdevOptions, BlockdevOptions] {
  const vdev = vdevId(d.vdev);
  const flags = cacheFlags(facts.cache);
  // native AIO needs O_DIRECT; without it QEMU refuses to open the node.
  const aio = facts.aio === 'native' && !flags.direct ? 'threads' : facts.aio;
  const readOnly = d.access === 'ro' || d.devtype === 'cdrom';
  const cache = { direct: flags.direct, 'no-flush': flags.noFlush };
  const file: BlockdevOptions = {
    driver: facts.hostDevice ? 'host_device' : 'file', 'node-name': fileNodeName(vdev), filename: targetPath(d.target),
    aio, cache, 'read-only': readOnly, 'auto-read-only': false, discard: 'unmap',
    // test-only: QEMU's own image lock off, so a pool HA test proves xeno's fencing, not that lock
    ...(process.env.XENO_TEST_QEMU_FILE_LOCKING === 'off' && !readOnly ? { locking: 'off' } : {}),
  };
  const format: BlockdevOptions = {
    driver: qemuFormat(d.format), 'node-name': formatNodeName(vdev), file: fileNodeName(vdev), cache, 'read-only': readOnly,
  };
  return [file, format];
}

export type DeviceProps = Record<string, string | number | boolean>;

/**
 * A virtio disk's PCI slot, fixed by its vdev (xvda 0x10 ... xvdp 0x1f): a disk hot-plugged in
 * any order sits where a QEMU started from the config puts it, so a save or a migration stream
 * (device state by PCI address) loads into the restarted QEMU, and the guest's vdX order is the
 * vdev order. Auto-placed devices (console, balloon, NICs) take the slots below. Beyond xvdp: auto.
 */
export function diskSlot(vdev: string): string | undefined {
  const index = vdevIndex(vdev);
  return index < 16 ? `0x${(0x10 + index).toString(16)}` : undefined;
}

/**
 * The guest device: virtio-blk (xenblk's counterpart, serial = the vdev so the guest can find it by
 * /dev/disk/by-id/virtio-<vdev>) or an IDE cdrom, without `drive` when the tray is empty.
 */
export function diskDevice(d: DiskSpec, facts: DiskHostFacts | undefined, bootindex?: number): DeviceProps {
  const vdev = vdevId(d.vdev);
  const props: DeviceProps = d.devtype === 'cdrom'
    ? { driver: 'ide-cd', id: vdev, ...(d.target ? { drive: formatNodeName(vdev) } : {}) }
    : { driver: 'virtio-blk-pci', id: vdev, drive: formatNodeName(vdev), serial: vdev, 'write-cache': cacheFlags(facts?.cache ?? 'writeback').writeCache ? 'on' : 'off' };
  const slot = d.devtype === 'cdrom' ? undefined : diskSlot(vdev);
  if (slot) props.addr = slot;
  if (bootindex !== undefined) props.bootindex = bootindex;
  return props;
}

/** A device's props in -device's key=value spelling (every value here is a plain token). */
export function deviceOpt(p: DeviceProps): string {
  const { driver, ...rest } = p;
  return [String(driver), ...Object.entries(rest).map(([k, v]) => `${k}=${v === true ? 'on' : v === false ? 'off' : String(v)}`)].join(',');
}

/**
 * The vdev of a query-block / query-blockstats entry: its guest device id is the vdev (hypervisor/qemu/argv.ts),
 * reported as qdev `/machine/peripheral/<vdev>/virtio-backend` (virtio) or `<vdev>` (ide-cd);
 * its root node is `disk-<vdev>`.
 */
export function blockEntryVdev(e: { qdev?: string; 'node-name'?: string; device?: string }): string | undefined {
  const q = /^(?:\/machine\/peripheral\/)?([a-z][a-z0-9]*)(?:\/virtio-backend)?$/.exec(e.qdev ?? '');
  if (q) return q[1];
  const n = /^disk-([a-z][a-z0-9]*)$/.exec(e['node-name'] ?? '');
  return n?.[1] ?? (e.device || undefined);
}
