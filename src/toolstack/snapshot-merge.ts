/**
 * snapshot-delete: a snapshot's frozen image F has at most one layer on top of it, C (the next
 * snapshot's frozen image, or the overlay the guest writes to now). C is committed into F (F then
 * holds exactly what C held, and F's parent chain is untouched), and whatever pointed at C points
 * at F; C's file is removed. While the guest runs and C is in its chain this is QEMU's block-commit
 * (an active commit, pivoted with job-complete, when C is the overlay being written); otherwise
 * qemu-img commit and a rebase of the layers above C. A snapshot with two children (a revert made
 * a branch) is refused: merging would have to pick one. A snapshot nothing grew from only has its
 * own overlay removed.
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { XenoError } from '../common/errors.js';
import { commitOffline, rebaseUnsafe } from '../host/image-chain.js';
import { activeNodeOf, delNode, formatNodeOf, openFiles, runJob } from '../hypervisor/qemu/block-nodes.js';
import type { Vm } from '../hypervisor/backend.js';
import type { DiskSpec } from '../model/domain-config.js';
import type { Snapshot, SnapshotDisk } from './snapshot-store.js';
import { isOverlay, type Guest, type Snapshots } from './snapshots.js';

const jobId = (what: string) => `${what}-${randomBytes(4).toString('hex')}`;

/** The overlay the guest writes to (`top`) merged into `base`, the disk then writing to `base`. */
export async function activeCommit(vm: Vm, top: string, base: string, id = jobId('commit')): Promise<void> {
  const device = await activeNodeOf(vm, top);
  const baseNode = await formatNodeOf(vm, base);
  if (!baseNode) throw new XenoError('QEMU_ERROR', `QEMU has no node for ${base}`);
  await vm.command('block-commit', { 'job-id': id, device, 'base-node': baseNode, 'auto-dismiss': false });
  await runJob(vm, id, { onReady: 'complete' });
  await delNode(vm, device);
}

/** `top` (not the active layer) merged into `base`; the layer above `top` now backs onto `base`. */
async function intermediateCommit(vm: Vm, active: string, top: string, base: string): Promise<void> {
  const device = await activeNodeOf(vm, active);
  const [topNode, baseNode] = await Promise.all([formatNodeOf(vm, top), formatNodeOf(vm, base)]);
  if (!topNode || !baseNode) throw new XenoError('QEMU_ERROR', `QEMU has no node for ${topNode ? base : top}`);
  const id = jobId('commit');
  await vm.command('block-commit', { 'job-id': id, device, 'top-node': topNode, 'base-node': baseNode, 'auto-dismiss': false });
  await runJob(vm, id);
  // Out of the chain now; a node xeno added (snap-…) would otherwise keep the removed file open.
  await delNode(vm, topNode);
}

export async function mergeSnapshot(snaps: Snapshots, g: Guest, s: Snapshot): Promise<string[]> {
  const store = snaps.store;
  const all = store.list(g.name);
  const children = all.filter((x) => x.parent === s.name);
  const isCurrent = store.current(g.name) === s.name;
  const count = children.length + (isCurrent ? 1 : 0);
  if (count > 1) {
    const names = [...children.map((c) => c.name), ...(isCurrent ? ['the present state'] : [])];
    throw new XenoError('BAD_STATE', `snapshot ${s.name} of ${g.name} has ${count} branches growing from it (${names.join(', ')}): delete all but one of them first`);
  }
  const config = snaps.configOf(g);
  const vm = g.rec ? snaps.toolstack.liveOf(g.rec).vm : undefined;
  const open = vm ? await openFiles(vm) : new Set<string>();
  const active = (vdev: string) => config.disks.find((d) => d.vdev === vdev)?.target;
  const merged: string[] = [];
  const replaced = new Map<string, SnapshotDisk[]>();
  const newActive = new Map<string, { target: string; format: DiskSpec['format'] }>();
  const child = children[0];
  const childDisks = child ? child.disks.map((d) => ({ ...d })) : [];

  for (const d of s.disks) {
    if (count === 0) {
      if (isOverlay(d.file) && !open.has(d.file)) rmSync(d.file, { force: true });
      continue;
    }
    const top = child ? child.disks.find((x) => x.vdev === d.vdev)?.file : active(d.vdev);
    if (!top) continue;
    if (vm && open.has(top)) {
      if (top === active(d.vdev)) await activeCommit(vm, top, d.file);
      else await intermediateCommit(vm, active(d.vdev)!, top, d.file);
    } else {
      await commitOffline(top, d.file);
      // What grew on top of `top`: the next snapshots' frozen images, and the present overlay.
      const above = all.filter((x) => child && x.parent === child.name).flatMap((x) => x.disks.filter((y) => y.vdev === d.vdev).map((y) => y.file));
      if (child ? store.current(g.name) === child.name : false) above.push(active(d.vdev)!);
      for (const f of above) await rebaseUnsafe(f, d.file, d.format);
    }
    if (isOverlay(top)) rmSync(top, { force: true });
    merged.push(`${d.vdev}: ${top} merged into ${d.file}`);
    if (child) {
      const cd = childDisks.find((x) => x.vdev === d.vdev);
      if (cd) Object.assign(cd, { file: d.file, format: d.format });
    } else newActive.set(d.vdev, { target: d.file, format: d.format });
  }
  if (child) replaced.set(child.name, childDisks);
  if (s.stateFile) rmSync(s.stateFile, { force: true });
  store.remove(g.name, s.name, s.parent, replaced);
  if (newActive.size) snaps.setDisks(g, newActive);
  return merged;
}
