/**
 * A re-adopted QEMU's disks against the stored config, after a xenod killed in the middle of a
 * block-attach or block-detach (block.ts saves the config only once QEMU is done):
 *  - a disk device QEMU has that the config lacks (the attach had plugged it) joins the config, as
 *    QEMU has it open (its top file, format and access): the guest sees it, so it is kept;
 *  - a disk in the config whose device QEMU no longer has (the detach had gone through) leaves it,
 *    its nodes are removed if any are left, and its files' ACLs are put back;
 *  - `disk-<vdev>` / `file-<vdev>` nodes no device uses and no config disk names (an attach cut
 *    between blockdev-add and device_add) are removed, so the same vdev can be attached again.
 * cdrom drives are left alone (their device is never hot-plugged).
 */
import { blockEntryVdev, fileNodeName, formatNodeName } from '../hypervisor/qemu/disk-argv.js';
import { delNode } from '../hypervisor/qemu/block-nodes.js';
import type { Vm } from '../hypervisor/backend.js';
import { DISK_FORMATS, type DiskFormat, type DiskSpec, type DomainConfig } from '../model/domain-config.js';

interface QueryBlock {
  qdev?: string;
  device?: string;
  inserted?: { file: string; drv: string; ro: boolean; 'node-name'?: string };
}

export interface DiskReconcile {
  config: DomainConfig;
  added: string[];
  removed: string[];
}

export async function reconcileDisks(vm: Vm, config: DomainConfig): Promise<DiskReconcile> {
  const blocks = await vm.command<QueryBlock[]>('query-block');
  const devices = new Map<string, QueryBlock>();
  for (const b of blocks) {
    const vdev = b.qdev ? blockEntryVdev({ qdev: b.qdev }) : undefined;
    if (vdev) devices.set(vdev, b);
  }
  const removed = config.disks.filter((d) => d.devtype === 'disk' && !devices.has(d.vdev)).map((d) => d.vdev);
  const known = new Set(config.disks.map((d) => d.vdev));
  const added: DiskSpec[] = [];
  for (const [vdev, b] of devices) {
    if (known.has(vdev) || !b.inserted || !/virtio-backend$/.test(b.qdev ?? '')) continue;
    const format = b.inserted.drv as DiskFormat;
    if (!(DISK_FORMATS as readonly string[]).includes(format)) continue;
    added.push({ vdev, target: b.inserted.file, format, access: b.inserted.ro ? 'ro' : 'rw', devtype: 'disk' });
  }
  // Nodes of vdevs that are neither in the (new) config nor under a device.
  const nodes = await vm.command<Array<{ 'node-name': string }>>('query-named-block-nodes', { flat: true });
  const keep = new Set([...config.disks.map((d) => d.vdev).filter((v) => !removed.includes(v)), ...added.map((d) => d.vdev)]);
  const stray = new Set<string>();
  for (const n of nodes) {
    const m = /^(?:disk|file)-([a-z][a-z0-9]*)$/.exec(n['node-name']);
    if (m && !keep.has(m[1]!)) stray.add(m[1]!);
  }
  for (const v of stray) {
    await delNode(vm, formatNodeName(v));
    await delNode(vm, fileNodeName(v));
  }
  if (removed.length === 0 && added.length === 0) return { config, added: [], removed: [] };
  const disks = [...config.disks.filter((d) => !removed.includes(d.vdev)), ...added];
  return { config: { ...config, disks }, added: added.map((d) => d.vdev), removed };
}
