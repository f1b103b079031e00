/**
 * Virtual block devices of a running domain, as xm/xl name them: block-list, block-attach,
 * block-detach, cd-insert, cd-eject. QEMU side (naming in hypervisor/qemu/argv.ts):
 *  - attach: blockdev-add file-<vdev>, blockdev-add disk-<vdev>, device_add <vdev>; a failure at
 *    any step removes what the earlier steps made (no node is left behind);
 *  - detach: device_del <vdev>, then the guest releases it (DEVICE_DELETED, waited for), and only
 *    then blockdev-del disk-<vdev> and file-<vdev>: the image stays open until the guest let go;
 *  - cd-insert / cd-eject: the tray of ide-cd <vdev> opened, the medium's nodes swapped, closed.
 * Every change goes through the one validator (validateChange, then the image check of the config
 * guard) and is written to the stored config, so a restart, save/restore or migration keeps it.
 */
import { XenoError } from '../common/errors.js';
import { crashPoint } from '../common/test-crash.js';
import { parseDiskSpec } from '../config/disk-spec.js';
import { blockEntryVdev, diskBlockdevs, diskDevice, fileNodeName, formatNodeName, type DiskHostFacts } from '../hypervisor/qemu/disk-argv.js';
import { diskFactsFor } from '../hypervisor/qemu/disk-probe.js';
import { deviceChainNodes } from '../hypervisor/qemu/block-nodes.js';
import { waitVmEvent } from '../hypervisor/vm-events.js';
import type { Vm } from '../hypervisor/backend.js';
import type { DiskSpec } from '../model/domain-config.js';
import { checkDiskImage } from './config-guard.js';
import { unlessAborted } from './long-ops.js';
import type { DomainRecord } from './store.js';
import type { Toolstack } from './toolstack.js';

export interface BlockRow {
  vdev: string;
  devtype: 'disk' | 'cdrom';
  /** The backend as configured ('' = an empty cdrom drive). */
  target: string;
  format: string;
  access: 'ro' | 'rw';
  cache: string | null;
  /** What QEMU has open for it (query-block), null when nothing (empty tray, domain not running). */
  inserted: string | null;
  /** Virtual size in bytes, from QEMU (null when not running or empty). */
  sizeBytes: number | null;
  rdBytes: number | null;
  wrBytes: number | null;
  rdReqs: number | null;
  wrReqs: number | null;
  trayOpen?: boolean;
}

interface QueryBlock {
  qdev?: string;
  tray_open?: boolean;
  inserted?: { file: string; 'node-name'?: string; image: { 'virtual-size': number; format: string }; cache?: { direct: boolean; 'no-flush': boolean; writeback: boolean } };
}

interface BlockStats {
  qdev?: string;
  'node-name'?: string;
  device?: string;
  stats: { rd_bytes: number; wr_bytes: number; rd_operations: number; wr_operations: number };
}

const badRequest = (m: string) => new XenoError('BAD_REQUEST', m);

function cacheName(c: { direct: boolean; 'no-flush': boolean; writeback: boolean } | undefined): string | null {
  if (!c) return null;
  if (c['no-flush']) return 'unsafe';
  if (c.direct) return c.writeback ? 'none' : 'directsync';
  return c.writeback ? 'writeback' : 'writethrough';
}

function saveDisks(ts: Toolstack, rec: DomainRecord, disks: DiskSpec[]): void {
  const fresh = ts.deps.store.get(rec.id) ?? rec;
  const config = { ...fresh.config, disks };
  rec.config = config;
  ts.deps.store.update(rec.id, { config });
}

export class BlockDevices {
  constructor(
    readonly ts: Toolstack,
    private readonly opts: { detachTimeoutMs?: number } = {},
  ) {}

  /** `xm block-list`: the config's disks with what QEMU has open and its I/O counters. */
  async list(dom: string): Promise<BlockRow[]> {
    const rec = this.ts.resolve(dom);
    const live = this.ts.liveById(rec.id);
    let blocks: QueryBlock[] = [];
    let stats: BlockStats[] = [];
    if (live) {
      [blocks, stats] = await Promise.all([
        live.vm.command<QueryBlock[]>('query-block', undefined, 10_000).catch(() => []),
        live.vm.command<BlockStats[]>('query-blockstats', undefined, 10_000).catch(() => []),
      ]);
    }
    return rec.config.disks.map((d) => {
      const b = blocks.find((x) => blockEntryVdev(x) === d.vdev);
      const s = stats.find((x) => blockEntryVdev(x) === d.vdev)?.stats;
      const row: BlockRow = {
        vdev: d.vdev, devtype: d.devtype, target: d.target, format: d.format, access: d.access,
        cache: cacheName(b?.inserted?.cache) ?? d.cache ?? rec.config.diskCache ?? null,
        inserted: b?.inserted?.file ?? null, sizeBytes: b?.inserted?.image['virtual-size'] ?? null,
        rdBytes: s?.rd_bytes ?? null, wrBytes: s?.wr_bytes ?? null, rdReqs: s?.rd_operations ?? null, wrReqs: s?.wr_operations ?? null,
      };
      if (d.devtype === 'cdrom' && b) row.trayOpen = b.tray_open ?? false;
      return row;
    });
  }

  /** Validates a disk joining the domain's config and checks its image; returns its host facts. */
  private async admit(rec: DomainRecord, disks: DiskSpec[], d: DiskSpec, op: string): Promise<DiskHostFacts> {
    const next = this.ts.validateChange(rec, { ...rec.config, disks }, op);
    const i = next.disks.findIndex((x) => x.vdev === d.vdev);
    const disk = next.disks[i]!;
    const prefix = (e: unknown) => (e instanceof XenoError ? new XenoError(e.code, `${op} ${rec.name}: ${e.message}`, e.details) : e);
    try {
      await checkDiskImage(disk, `disks[${i}]`, this.ts.deps.config);
      const facts = diskFactsFor(disk, rec.config.diskCache);
      // QEMU runs unprivileged: the new file is opened up to it (host/qemu-user.ts) first.
      await this.ts.hooks.beforeHotplug?.(rec, next);
      return facts;
    } catch (e) {
      throw prefix(e);
    }
  }

  /** Adds a disk's two nodes; on a failure the first is removed again. */
  private async addNodes(vm: Vm, d: DiskSpec, facts: DiskHostFacts): Promise<void> {
    const [file, format] = diskBlockdevs(d, facts);
    await vm.command('blockdev-add', file);
    try {
      await vm.command('blockdev-add', format);
    } catch (e) {
      await vm.command('blockdev-del', { 'node-name': fileNodeName(d.vdev) }).catch(() => undefined);
      throw e;
    }
  }

  /**
   * The disk's nodes removed, `above` first: the snapshot overlays xeno put on top of disk-<vdev>
   * (deviceChainNodes, read while the device still had them). Layers QEMU opened itself from a
   * backing chain go with their parent; only the nodes xeno added are deleted by name.
   */
  private async delNodes(vm: Vm, vdev: string, above: string[] = []): Promise<void> {
    for (const n of above) if (/^snap-/.test(n)) await vm.command('blockdev-del', { 'node-name': n });
    await vm.command('blockdev-del', { 'node-name': formatNodeName(vdev) });
    await vm.command('blockdev-del', { 'node-name': fileNodeName(vdev) });
  }

  /** The host files QEMU closed are no longer opened to its user (whatever admit() granted). */
  private async unplugged(rec: DomainRecord, op: string): Promise<void> {
    await this.ts.hooks.afterUnplug?.(rec, rec.config).catch((e: unknown) => {
      this.ts.deps.log.warn({ domain: rec.name }, `${op} ${rec.name}: ${(e as Error).message}`);
    });
  }

  /** `xm block-attach DOM SPEC`: any disk spec the config accepts ('file:/img,xvdb,w', xl's forms). */
  async attach(dom: string, spec: string): Promise<BlockRow> {
    const d = parseDiskSpec(spec);
    const name = await this.ts.withDomain(dom, 'block', async (rec) => {
      if (d.devtype === 'cdrom') throw badRequest(`block-attach ${rec.name}: a cdrom drive cannot be hot-plugged (IDE); give it in the config, then use cd-insert`);
      if (rec.config.disks.some((x) => x.vdev === d.vdev)) throw badRequest(`block-attach ${rec.name}: it already has a disk ${d.vdev} (block-list shows them)`);
      const disks = [...rec.config.disks, d];
      const facts = await this.admit(rec, disks, d, 'block-attach');
      const vm = this.ts.liveOf(rec).vm;
      try {
        await this.addNodes(vm, d, facts);
      } catch (e) {
        throw new XenoError('QEMU_ERROR', `block-attach ${rec.name}: QEMU cannot open ${d.target}: ${(e as Error).message}`);
      }
      try {
        await vm.command('device_add', diskDevice(d, facts));
      } catch (e) {
        await this.delNodes(vm, d.vdev).catch(() => undefined);
        throw new XenoError('QEMU_ERROR', `block-attach ${rec.name}: cannot hot-plug ${d.vdev}: ${(e as Error).message}`);
      }
      crashPoint('block-attach:plugged');
      saveDisks(this.ts, rec, disks);
      this.ts.event(rec, 'block-attach', `disk ${d.vdev} (${d.target}, ${d.format}, ${d.access}, cache=${facts.cache}) attached to ${rec.name}`);
      return rec.name;
    });
    return (await this.list(name)).find((r) => r.vdev === d.vdev)!;
  }

  /** `xm block-detach DOM VDEV`: the guest releases it first; its image is closed only then. */
  async detach(dom: string, vdev: string, timeoutMs = this.opts.detachTimeoutMs ?? 30_000): Promise<{ vdev: string }> {
    return this.ts.withDomain(dom, 'block', (rec) => this.ts.longOperation(rec.id, 'block-detach', async (signal) => {
      const d = rec.config.disks.find((x) => x.vdev === vdev);
      if (!d) throw badRequest(`block-detach ${rec.name}: it has no disk ${vdev} (block-list shows them)`);
      if (d.devtype === 'cdrom') throw badRequest(`block-detach ${rec.name}: ${vdev} is a cdrom drive (IDE, not hot-pluggable): use cd-eject`);
      const vm = this.ts.liveOf(rec).vm;
      // Its nodes now, while the device holds them: after a snapshot the top is an overlay's.
      const chain = await deviceChainNodes(vm, blockEntryVdev, vdev).catch(() => [] as string[]);
      const wait = waitVmEvent(vm, (e) => e.event === 'DEVICE_DELETED' && e.data.device === vdev, timeoutMs);
      try {
        await vm.command('device_del', { id: vdev });
      } catch (e) {
        wait.cancel();
        // Gone already (an earlier detach that timed out, completed since): only the nodes are left.
        if (!/not found/i.test((e as Error).message)) throw new XenoError('QEMU_ERROR', `block-detach ${rec.name}: device_del ${vdev}: ${(e as Error).message}`);
      }
      const released = await unlessAborted(wait.done, signal);
      if (released === 'aborted') {
        wait.cancel();
        throw signal.reason;
      }
      if (!released && (await deviceExists(vm, vdev))) {
        throw new XenoError('TIMEOUT', `block-detach ${rec.name}: the guest did not release ${vdev} within ${timeoutMs / 1000} s (it must support PCI hot-unplug and not hold the disk busy); the disk stays attached, try again`);
      }
      await this.delNodes(vm, vdev, chain).catch((e: unknown) => {
        throw new XenoError('QEMU_ERROR', `block-detach ${rec.name}: the guest released ${vdev} but QEMU keeps its image open: ${(e as Error).message}`);
      });
      crashPoint('block-detach:released');
      saveDisks(this.ts, rec, rec.config.disks.filter((x) => x.vdev !== vdev));
      await this.unplugged(rec, 'block-detach');
      this.ts.event(rec, 'block-detach', `disk ${vdev} (${d.target}) detached from ${rec.name}`);
      return { vdev };
    }));
  }

  private cdrom(rec: DomainRecord, vdev: string, op: string): DiskSpec {
    const d = rec.config.disks.find((x) => x.vdev === vdev);
    if (!d) throw badRequest(`${op} ${rec.name}: it has no drive ${vdev} (block-list shows them)`);
    if (d.devtype !== 'cdrom') throw badRequest(`${op} ${rec.name}: ${vdev} is a disk, not a cdrom drive (use block-detach / block-attach)`);
    return d;
  }

  /** Takes the medium out of a cdrom drive (tray opened, nodes removed, tray closed: empty). */
  private async removeMedium(vm: Vm, vdev: string): Promise<void> {
    await vm.command('blockdev-open-tray', { id: vdev, force: true });
    await vm.command('blockdev-remove-medium', { id: vdev });
    await this.delNodes(vm, vdev).catch(() => undefined);
  }

  /** `xm cd-insert DOM VDEV PATH` (PATH may carry a format prefix, e.g. raw:/srv/x.iso). */
  async cdInsert(dom: string, vdev: string, target: string): Promise<BlockRow> {
    const name = await this.ts.withDomain(dom, 'block', async (rec) => {
      const old = this.cdrom(rec, vdev, 'cd-insert');
      const parsed = parseDiskSpec(`${target},,${vdev}:cdrom`);
      const d: DiskSpec = { ...old, target: parsed.target, format: /^[a-z0-9]+:/.test(target) ? parsed.format : old.format };
      const disks = rec.config.disks.map((x) => (x.vdev === vdev ? d : x));
      const facts = await this.admit(rec, disks, d, 'cd-insert');
      const vm = this.ts.liveOf(rec).vm;
      if (old.target) await this.removeMedium(vm, vdev);
      try {
        await this.addNodes(vm, d, facts);
      } catch (e) {
        if (old.target) saveDisks(this.ts, rec, rec.config.disks.map((x) => (x.vdev === vdev ? { ...old, target: '' } : x)));
        throw new XenoError('QEMU_ERROR', `cd-insert ${rec.name}: QEMU cannot open ${d.target}: ${(e as Error).message}`);
      }
      try {
        await vm.command('blockdev-open-tray', { id: vdev, force: true });
        await vm.command('blockdev-insert-medium', { id: vdev, 'node-name': formatNodeName(vdev) });
        await vm.command('blockdev-close-tray', { id: vdev });
      } catch (e) {
        await vm.command('blockdev-remove-medium', { id: vdev }).catch(() => undefined);
        await this.delNodes(vm, vdev).catch(() => undefined);
        throw new XenoError('QEMU_ERROR', `cd-insert ${rec.name}: ${(e as Error).message}`);
      }
      saveDisks(this.ts, rec, disks);
      if (old.target) await this.unplugged(rec, 'cd-insert');
      this.ts.event(rec, 'cd-insert', `${d.target} inserted in ${rec.name}'s ${vdev}`);
      return rec.name;
    });
    return (await this.list(name)).find((r) => r.vdev === vdev)!;
  }

  /** `xm cd-eject DOM VDEV`: the drive stays, empty. */
  async cdEject(dom: string, vdev: string): Promise<BlockRow> {
    const name = await this.ts.withDomain(dom, 'block', async (rec) => {
      const old = this.cdrom(rec, vdev, 'cd-eject');
      const vm = this.ts.liveOf(rec).vm;
      if (old.target) {
        await this.removeMedium(vm, vdev).catch((e: unknown) => {
          throw new XenoError('QEMU_ERROR', `cd-eject ${rec.name}: ${(e as Error).message}`);
        });
        await vm.command('blockdev-close-tray', { id: vdev }).catch(() => undefined);
      }
      saveDisks(this.ts, rec, rec.config.disks.map((x) => (x.vdev === vdev ? { ...old, target: '' } : x)));
      await this.unplugged(rec, 'cd-eject');
      this.ts.event(rec, 'cd-eject', `${rec.name}'s ${vdev} ejected`);
      return rec.name;
    });
    return (await this.list(name)).find((r) => r.vdev === vdev)!;
  }
}

async function deviceExists(vm: Vm, id: string): Promise<boolean> {
  try {
    return Array.isArray(await vm.command('qom-list', { path: `/machine/peripheral/${id}` }));
  } catch {
    return false;
  }
}
