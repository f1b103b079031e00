/**
 * `xeno migrate --copy-storage`: migration without shared storage, the source side. QEMU's recipe
 * (as libvirt's): the target creates each writable disk (same size and format, thin where the
 * source is; storage-copy-target.ts) and exports it over NBD with the session's TLS-PSK
 * credentials; the source opens each export as an nbd blockdev (TLS-PSK, the same derived key as
 * the RAM stream), mirrors the disk to it (blockdev-mirror: `top` when the disk sits on backing
 * files the target already has, else `full`), waits until every mirror is READY (in step, the
 * guest running and writing meanwhile), then migrates RAM; once QEMU's migration has completed
 * (the guest stopped) the mirrors are ended with block-job-cancel (a ready mirror ends in step,
 * without a pivot: the source keeps its own disks, so a failure after this still leaves it whole)
 * and the target may run the guest. Read-only disks are not copied: the same paths must exist on
 * the target. Every failure before the commit cancels the mirrors, removes the nbd nodes and
 * resumes the guest here; the target destroys its domain and removes the disks it created.
 *
 *   source                                        target
 *   prepare {..., storage: offer} ------------->  checks backing files and shared disks exist,
 *                                                 creates the disks, starts QEMU, NBD exports
 *                          <--------------------  prepared {..., nbd: {port, exports}}
 *   blockdev-add nbd (TLS) + blockdev-mirror
 *   mirroring -------------------------------->
 *   every mirror READY
 *   storage-ready ---------------------------->
 *   QMP migrate (RAM), query-migrate completed
 *   block-job-cancel (each), nbd nodes removed
 *   done ------------------------------------->  incoming completed, exports and NBD server removed
 *   (then loaded / commit / ok as any migration)
 */
import net from 'node:net';
import type { Logger } from 'pino';
import { XenoError } from '../common/errors.js';
import { chainOf } from '../host/image-chain.js';
import { activeNodeOf, cancelJob, delNode, runJob, type JobInfo } from '../hypervisor/qemu/block-nodes.js';
import type { Vm } from '../hypervisor/backend.js';
import type { DiskFormat, DomainConfig } from '../model/domain-config.js';
import { TLS_OBJECT_ID } from './protocol.js';

/** A disk the target creates and the source mirrors into. */
export interface CopiedDisk {
  vdev: string;
  format: DiskFormat;
  /** Bytes the guest sees. */
  virtualSize: number;
  /** Sparse on the source (allocated < virtual): created thin on the target too. */
  thin: boolean;
  /** The file under it the target must already have (the mirror then copies the top layer only). */
  backing?: { file: string; format: string };
  /** Its file name on the source (the target keeps the base name). */
  source: string;
}

export interface StorageOffer {
  copy: CopiedDisk[];
  /** Files that must already exist on the target: read-only disks, and the backing chains. */
  mustExist: string[];
}

export interface NbdOffer {
  port: number;
  /** Export name per copied vdev. */
  exports: Array<{ vdev: string; name: string }>;
}

/** Prefix of every job and node a storage copy makes in the source QEMU (found again after a restart). */
export const COPY_PREFIX = 'xmig-';

/** What the source tells the target to make: every writable disk, and what must be there already. */
export async function storageOffer(c: DomainConfig): Promise<StorageOffer> {
  const copy: CopiedDisk[] = [];
  const mustExist = new Set<string>();
  for (const d of c.disks) {
    if (!d.target) continue;
    if (d.access === 'ro' || d.devtype === 'cdrom') {
      mustExist.add(d.target);
      continue;
    }
    const chain = await chainOf(d.target, d.format);
    const top = chain[0]!;
    for (const l of chain.slice(1)) mustExist.add(l.filename);
    const below = chain[1];
    copy.push({
      vdev: d.vdev, format: d.format, virtualSize: top.virtualSize, source: d.target,
      thin: top.actualSize !== undefined && top.actualSize < top.virtualSize,
      ...(below ? { backing: { file: below.filename, format: below.format } } : {}),
    });
  }
  return { copy, mustExist: [...mustExist] };
}

/** The config with only the disks a storage copy leaves shared (read-only ones): for the identity check. */
export function sharedOnly(c: DomainConfig): DomainConfig {
  return { ...c, disks: c.disks.filter((d) => d.access === 'ro' || d.devtype === 'cdrom') };
}

interface Mirror {
  disk: CopiedDisk;
  job: string;
  node: string;
}

/** The source's half of a storage copy, in a running QEMU whose TLS-PSK client creds are set. */
export class StorageCopySource {
  private readonly mirrors: Mirror[] = [];

  constructor(
    private readonly vm: Vm,
    private readonly log: Logger,
    private readonly name: string,
  ) {}

  /** nbd nodes to the target's exports, and one mirror per disk started. */
  async start(offer: StorageOffer, nbd: NbdOffer, host: string): Promise<void> {
    // whatever an earlier copy could not remove (its names are taken otherwise)
    await abortStorageCopy(this.vm);
    for (const disk of offer.copy) {
      const exp = nbd.exports.find((e) => e.vdev === disk.vdev);
      if (!exp) throw new XenoError('HOST_ERROR', `the target exports no disk for ${disk.vdev}`);
      const m: Mirror = { disk, job: `${COPY_PREFIX}job-${disk.vdev}`, node: `${COPY_PREFIX}nbd-${disk.vdev}` };
      await this.vm.command('blockdev-add', {
        driver: 'nbd', 'node-name': m.node, export: exp.name, 'tls-creds': TLS_OBJECT_ID,
        server: { type: 'inet', host: net.isIPv6(host) ? host : host, port: String(nbd.port) },
      });
      this.mirrors.push(m);
      const device = await activeNodeOf(this.vm, disk.source);
      await this.vm.command('blockdev-mirror', {
        'job-id': m.job, device, target: m.node, sync: disk.backing ? 'top' : 'full', 'auto-dismiss': false,
      });
    }
    this.log.info({ domain: this.name }, `storage copy of ${this.name}: mirroring ${this.mirrors.length} disk(s) (${this.mirrors.map((m) => m.disk.vdev).join(', ')}) to the target's NBD exports`);
  }

  /**
   * Every mirror in step (BLOCK_JOB_READY); throws as soon as one fails or `abort` says so.
   * `onProgress` gets the mirrors' bytes copied and still to copy, summed (status `mirroring`).
   */
  async ready(abort: () => Error | undefined, onProgress?: (p: { status: 'mirroring'; transferred: number; remaining: number; total: number }) => void): Promise<void> {
    const seen = new Map<string, JobInfo>();
    const onPoll = (job: JobInfo) => {
      seen.set(job.id, job);
      const done = [...seen.values()].reduce((n, j) => n + j['current-progress'], 0);
      const total = [...seen.values()].reduce((n, j) => n + j['total-progress'], 0);
      onProgress?.({ status: 'mirroring', transferred: done, remaining: total - done, total });
    };
    await Promise.all(this.mirrors.map((m) => runJob(this.vm, m.job, { onReady: 'leave', abort, pollMs: 100, onPoll })));
    this.log.info({ domain: this.name }, `storage copy of ${this.name}: all ${this.mirrors.length} disk(s) mirrored (ready), migrating RAM`);
  }

  /** After QEMU's migration completed: each mirror ended in step (no pivot), the nbd nodes gone. */
  async finish(): Promise<void> {
    for (const m of this.mirrors) {
      await this.vm.command('block-job-cancel', { device: m.job });
      await runJob(this.vm, m.job, { onReady: 'wait', timeoutMs: 5 * 60_000 });
    }
    for (const m of this.mirrors) await delNode(this.vm, m.node);
    this.mirrors.length = 0;
  }

  /** After a failure: the mirrors cancelled and the nbd nodes removed; the disks here are untouched. */
  async abort(): Promise<void> {
    await abortStorageCopy(this.vm, this.mirrors.map((m) => m.job), this.mirrors.map((m) => m.node));
    this.mirrors.length = 0;
  }
}

/**
 * Cancel every job and remove every node of a storage copy (by name, or every one with the copy's
 * prefix: a xenod restarted mid-copy finds them in QEMU).
 */
export async function abortStorageCopy(vm: Vm, jobIds?: string[], nodes?: string[]): Promise<void> {
  if (vm.exited) return;
  const jobs = jobIds ?? (await vm.command<Array<{ id: string }>>('query-jobs').catch(() => [])).map((j) => j.id).filter((id) => id.startsWith(COPY_PREFIX));
  const names = nodes ?? (await vm.command<Array<{ 'node-name': string }>>('query-named-block-nodes', { flat: true }).catch(() => [])).map((n) => n['node-name']).filter((n) => n.startsWith(COPY_PREFIX));
  // A cut link leaves the nbd client's writes hanging in TCP retransmission (QEMU has no I/O
  // timeout on them), and a mirror cannot end before its writes do: the cancel would wait, and the
  // job and its nbd node outlive the abort (the next copy then finds the node names taken).
  // `yank` shuts the nbd sockets down, so the pending writes fail at once.
  if (names.length) await vm.command('yank', { instances: names.map((n) => ({ type: 'block-node', 'node-name': n })) }).catch(() => undefined);
  for (const id of jobs) {
    await vm.command('block-job-cancel', { device: id, force: true }).catch(() => undefined);
    await cancelJob(vm, id);
  }
  for (const n of names) await delNode(vm, n);
}
