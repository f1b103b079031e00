/**
 * Xen device names on virtio. A Xen guest sees its disks by their vdev (xvda, xvdb...); under
 * QEMU they are virtio-blk, which the guest names vda, vdb... in the order it finds them. xeno
 * puts them on the PCI bus in vdev order, so the guest's vda is the config's xvda (or hda, sda),
 * vdb the next one, and translates /dev/xvdXN (sdXN, hdXN) in a PV kernel command line to the
 * name the disk really gets. A gap (a lone xvdb) cannot be kept: virtio names by rank, so that
 * disk is vda in the guest (with a warning). Pure.
 */
import type { DiskSpec, DomainConfig } from '../model/domain-config.js';

/** Xen's disk index of a vdev: xvda/hda/sda 0, ...b 1, xvdz 25, xvdaa 26 (partition digits ignored). */
export function vdevIndex(vdev: string): number {
  const m = /^(?:xvd|hd|sd|vd)([a-z]+)/.exec(vdev);
  if (!m) return Number.MAX_SAFE_INTEGER;
  let n = 0;
  for (const ch of m[1]!) n = n * 26 + (ch.charCodeAt(0) - 96);
  return n - 1;
}

/** The config's disks (not cdroms) with their config index, in the order the guest sees them. */
export function disksInGuestOrder(disks: DiskSpec[]): Array<{ disk: DiskSpec; index: number }> {
  return disks
    .map((disk, index) => ({ disk, index }))
    .filter((d) => d.disk.devtype !== 'cdrom')
    .sort((a, b) => vdevIndex(a.disk.vdev) - vdevIndex(b.disk.vdev) || a.index - b.index);
}

/** The name a disk of the config has in the guest: vda, vdb... */
function guestLetters(rank: number): string {
  let s = '';
  for (let n = rank + 1; n > 0; n = Math.floor((n - 1) / 26)) s = String.fromCharCode(97 + ((n - 1) % 26)) + s;
  return s;
}

/** Xen disk index (xvdb, sdb and hdb are all 1) -> the name that disk has in the guest. */
export function guestDiskNames(disks: DiskSpec[]): Map<number, string> {
  const names = new Map<number, string>();
  disksInGuestOrder(disks).forEach(({ disk }, rank) => {
    if (!names.has(vdevIndex(disk.vdev))) names.set(vdevIndex(disk.vdev), `vd${guestLetters(rank)}`);
  });
  return names;
}

const XEN_DEV_RE = /\/dev\/((?:xvd|sd|hd)[a-z]{1,3})([0-9]{0,3})(?![A-Za-z0-9])/g;

/**
 * A kernel command line with /dev/xvdXN, /dev/sdXN and /dev/hdXN of configured disks replaced by
 * their virtio names; `changes` lists each `from -> to`. Names of no configured disk are kept.
 */
export function translateDiskNames(cmdline: string, disks: DiskSpec[]): { cmdline: string; changes: string[] } {
  const names = guestDiskNames(disks);
  const changes: string[] = [];
  const out = cmdline.replace(XEN_DEV_RE, (all, dev: string, part: string) => {
    const to = names.get(vdevIndex(dev));
    if (to === undefined) return all;
    const repl = `/dev/${to}${part}`;
    if (!changes.includes(`${all} -> ${repl}`)) changes.push(`${all} -> ${repl}`);
    return repl;
  });
  return { cmdline: out, changes };
}

/** Warnings about disk names, for the create output. */
export function diskNameWarnings(c: DomainConfig, cmdline: string | undefined): string[] {
  const out: string[] = [];
  disksInGuestOrder(c.disks).forEach(({ disk }, rank) => {
    const as = `vd${guestLetters(rank)}`;
    if (vdevIndex(disk.vdev) !== rank) out.push(`warning: disk ${disk.vdev} appears in the guest as /dev/${as} (virtio names disks by rank: xeno keeps the vdev order, not gaps)`);
  });
  if (cmdline !== undefined) {
    for (const ch of translateDiskNames(cmdline, c.disks).changes) out.push(`warning: kernel command line: ${ch} (the guest's disks are virtio-blk)`);
  }
  return out;
}
