/**
 * QMP for a running QEMU's block graph, found by file name rather than by node name: disks
 * started with -drive get generated node names, disks started with -blockdev (or added at run
 * time) named ones, and layers opened from a qcow2 backing chain generated ones again; the file
 * is what xeno knows in every case. Also a block job driven to its end (query-jobs polled: the
 * outcome of a job with auto-dismiss off stays there until dismissed, even across a xenod restart).
 */
import { XenoError } from '../../common/errors.js';
import type { Vm } from '../backend.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface NamedNode {
  'node-name': string;
  file: string;
  drv: string;
  ro: boolean;
  backing_file?: string;
  image?: { 'full-backing-filename'?: string };
}

interface BlockInfo {
  device: string;
  qdev?: string;
  inserted?: { 'node-name': string; file: string; drv: string; ro: boolean };
}

export interface JobInfo {
  id: string;
  type: string;
  status: string;
  'current-progress': number;
  'total-progress': number;
  error?: string;
}

/** Drivers of protocol nodes (the file under a format node). */
const PROTOCOLS = new Set(['file', 'host_device', 'host_cdrom', 'nbd', 'null-co']);

/** The format node (qcow2, raw...) open on `file`, or undefined when QEMU has no such node. */
export async function formatNodeOf(vm: Vm, file: string): Promise<string | undefined> {
  const nodes = await vm.command<NamedNode[]>('query-named-block-nodes', { flat: true });
  return nodes.find((n) => n.file === file && !PROTOCOLS.has(n.drv))?.['node-name'];
}

/** Every file QEMU has open as a block node. */
export async function openFiles(vm: Vm): Promise<Set<string>> {
  const nodes = await vm.command<NamedNode[]>('query-named-block-nodes', { flat: true });
  return new Set(nodes.map((n) => n.file));
}

/** The node at the top of the guest disk whose active layer is `file` (what the device writes to). */
export async function activeNodeOf(vm: Vm, file: string): Promise<string> {
  const blocks = await vm.command<BlockInfo[]>('query-block');
  const b = blocks.find((x) => x.inserted?.file === file);
  if (!b?.inserted) throw new XenoError('QEMU_ERROR', `QEMU has no guest disk writing to ${file}`);
  return b.inserted['node-name'];
}

/**
 * The format nodes of a guest device's disk, top (what it writes to) first, down its backing
 * chain: after a snapshot the top is a `snap-…` overlay node, not the `disk-<vdev>` the disk was
 * started or attached with, so anything that removes a disk's nodes must take them all. Empty
 * when the device has no medium and no overlay stands on the disk's node. A node is found below
 * another by its backing file's name.
 */
export async function deviceChainNodes(vm: Vm, vdevOf: (b: { qdev?: string; device?: string }) => string | undefined, vdev: string): Promise<string[]> {
  const blocks = await vm.command<BlockInfo[]>('query-block');
  const top = blocks.find((b) => vdevOf(b) === vdev)?.inserted?.['node-name'];
  const nodes = (await vm.command<NamedNode[]>('query-named-block-nodes', { flat: true })).filter((n) => !PROTOCOLS.has(n.drv));
  const chainFrom = (name: string): string[] => {
    const chain: string[] = [];
    for (let n = nodes.find((x) => x['node-name'] === name); n && !chain.includes(n['node-name']); ) {
      chain.push(n['node-name']);
      const below = n.image?.['full-backing-filename'] ?? n.backing_file;
      n = below ? nodes.find((x) => x.file === below) : undefined;
    }
    return chain;
  };
  if (top) return chainFrom(top);
  // The device is gone already (a detach that timed out, completed since): the longest chain of
  // overlay nodes still standing on this disk's own node.
  const base = `disk-${vdev}`;
  return nodes
    .filter((n) => n['node-name'].startsWith('snap-'))
    .map((n) => chainFrom(n['node-name']))
    .filter((c) => c.includes(base))
    .reduce<string[]>((a, c) => (c.length > a.length ? c : a), []);
}

/** A qcow2 overlay file opened as a node of its own, its backing left to blockdev-snapshot. */
export async function addOverlayNode(vm: Vm, nodeName: string, file: string): Promise<void> {
  await vm.command('blockdev-add', { driver: 'qcow2', 'node-name': nodeName, file: { driver: 'file', filename: file }, backing: null });
}

/** Remove a node added with blockdev-add (best effort: a node QEMU already dropped is fine). */
export async function delNode(vm: Vm, nodeName: string): Promise<void> {
  await vm.command('blockdev-del', { 'node-name': nodeName }).catch(() => undefined);
}

export interface JobOptions {
  /** When the job reports ready: complete it (active commit, mirror), return (caller decides), or wait on (a cancel is under way). */
  onReady?: 'complete' | 'leave' | 'wait';
  timeoutMs?: number;
  abort?: () => Error | undefined;
  pollMs?: number;
  /** Each poll's view of the job (progress figures). */
  onPoll?: (job: JobInfo) => void;
}

/**
 * Wait for block job `id` (started with auto-dismiss false) to end, completing it when it is
 * ready if asked; dismisses it and throws QEMU's error if it failed. Resolves 'ready' when
 * onReady is 'leave' and the job is ready.
 */
export async function runJob(vm: Vm, id: string, opts: JobOptions = {}): Promise<'concluded' | 'ready'> {
  const deadline = Date.now() + (opts.timeoutMs ?? 30 * 60_000);
  let completing = false;
  for (;;) {
    const why = opts.abort?.();
    if (why) throw why;
    if (vm.exited) throw new XenoError('QEMU_ERROR', `QEMU exited during block job ${id}`);
    const job = (await vm.command<JobInfo[]>('query-jobs')).find((j) => j.id === id);
    if (!job) throw new XenoError('QEMU_ERROR', `block job ${id} vanished`);
    opts.onPoll?.(job);
    if (job.status === 'ready' && !completing && opts.onReady !== 'wait') {
      if (opts.onReady === 'leave') return 'ready';
      completing = true;
      await vm.command('job-complete', { id });
    }
    if (job.status === 'concluded') {
      await vm.command('job-dismiss', { id }).catch(() => undefined);
      if (job.error) throw new XenoError('QEMU_ERROR', `block job ${id} failed: ${job.error}`);
      return 'concluded';
    }
    if (Date.now() > deadline) {
      await cancelJob(vm, id);
      throw new XenoError('TIMEOUT', `block job ${id} did not end in time (${job.status}, ${job['current-progress']}/${job['total-progress']} bytes)`);
    }
    await sleep(opts.pollMs ?? 50);
  }
}

/** Cancel a job and wait (bounded) until it is gone; nothing if there is no such job. */
export async function cancelJob(vm: Vm, id: string, waitMs = 30_000): Promise<void> {
  if (vm.exited) return;
  await vm.command('job-cancel', { id }).catch(() => undefined);
  const deadline = Date.now() + waitMs;
  while (Date.now() < deadline && !vm.exited) {
    const job = (await vm.command<JobInfo[]>('query-jobs').catch(() => [] as JobInfo[])).find((j) => j.id === id);
    if (!job) return;
    if (job.status === 'concluded' || job.status === 'null') {
      await vm.command('job-dismiss', { id }).catch(() => undefined);
      return;
    }
    await sleep(50);
  }
}

/** Jobs QEMU reports (for a check that nothing is left running). */
export async function jobs(vm: Vm): Promise<JobInfo[]> {
  return vm.command<JobInfo[]>('query-jobs');
}
