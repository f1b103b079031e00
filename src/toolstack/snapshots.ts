/**
 * Snapshots (xeno snapshot-create / -list / -revert / -delete) of running and stopped guests, as
 * external qcow2 overlays: taking one freezes every writable disk's present image and puts a new,
 * empty overlay on top that the guest writes to from then on (for a running guest: blockdev-add of
 * the overlays, then one QMP `transaction` of blockdev-snapshot, atomic across the disks). With
 * --memory the guest is paused across the transaction and its RAM and device state written to a
 * save file beside them (the migration-to-file of `xm save -c`), so a revert resumes it where it
 * was. A revert puts fresh overlays on the snapshot's frozen images (the present overlays are
 * discarded); a delete merges a layer into the one below (snapshot-merge.ts). The guest's config
 * (running record and definition) always names the top overlay, so a stop and start keep it.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { XenoError, errorMessage, isXenoError } from '../common/errors.js';
import { XENO_VERSION } from '../common/version.js';
import { createOverlay } from '../host/image-chain.js';
import { addOverlayNode, activeNodeOf, delNode } from '../hypervisor/qemu/block-nodes.js';
import type { DomainDefinition } from '../model/definition.js';
import { DOMAIN_NAME_RE, type DiskSpec, type DomainConfig } from '../model/domain-config.js';
import type { Definitions } from './definitions.js';
import { KeyedLock } from './locks.js';
import { loadVmFromFile, openIncomingFile, saveVmToFile } from './savefile/migrate-unix.js';
import { openSaveFile } from './savefile/reader.js';
import { activeCommit, mergeSnapshot } from './snapshot-merge.js';
import { SNAP_NAME_RE, SnapshotStore, type Snapshot, type SnapshotDisk } from './snapshot-store.js';
import type { DomainRecord } from './store.js';
import type { Toolstack } from './toolstack.js';

export interface SnapshotInfo {
  name: string;
  parent: string | null;
  created: number;
  memory: boolean;
  quiesced: boolean;
  vmState: Snapshot['vmState'];
  current: boolean;
  /** Depth in the tree (0: a root), for the listing. */
  depth: number;
  disks: SnapshotDisk[];
}

/** A guest's files that QEMU must be able to open (kept by the daemon's QemuAccess). */
export interface OverlayAccess {
  add(runDir: string, files: Array<{ path: string; perm: 'rw' }>): void;
}

export interface SnapshotDeps {
  ts: Toolstack;
  definitions: () => Definitions | undefined;
  access?: OverlayAccess;
  /** The guest agent's freeze/thaw, when xeno has one; without it --quiesce is refused. */
  agent?: { freeze(rec: DomainRecord): Promise<number>; thaw(rec: DomainRecord): Promise<void> };
  store: SnapshotStore;
}

/** Overlay files xeno made: `<disk>.snap-<hex>.qcow2` (only these are ever removed). */
export const OVERLAY_RE = /\.snap-[0-9a-f]{8}\.qcow2$/;

export function isOverlay(file: string): boolean {
  return OVERLAY_RE.test(file);
}

/** A new overlay name beside `file` (stem without the suffix of an earlier overlay). */
export function overlayPathFor(file: string): string {
  return `${file.replace(OVERLAY_RE, '')}.snap-${randomBytes(4).toString('hex')}.qcow2`;
}

/** The disks a snapshot covers: every writable disk with an image. */
export function writableDisks(c: DomainConfig): DiskSpec[] {
  return c.disks.filter((d) => d.devtype !== 'cdrom' && d.access === 'rw' && d.target);
}

interface Guest {
  name: string;
  rec?: DomainRecord;
  def?: DomainDefinition;
}

export class Snapshots {
  private readonly locks = new KeyedLock();

  constructor(private readonly deps: SnapshotDeps) {}

  private get ts(): Toolstack {
    return this.deps.ts;
  }

  private guest(dom: string): Guest {
    let rec: DomainRecord | undefined;
    try {
      rec = this.ts.resolve(dom);
    } catch (e) {
      if (!isXenoError(e) || e.code !== 'NO_SUCH_DOMAIN') throw e;
    }
    const name = rec?.name ?? dom;
    const def = this.deps.definitions()?.store.get(name);
    if (!rec && !def) throw new XenoError('NO_SUCH_DOMAIN', `no guest named '${dom}' runs or is defined`);
    return { name, rec, def };
  }

  /** Under the guest's snapshot lock, and the domain's lock when it runs. */
  private locked<T>(dom: string, fn: (g: Guest) => Promise<T>): Promise<T> {
    const first = this.guest(dom);
    return this.locks.run(first.name, async () => {
      const g = this.guest(dom);
      if (!g.rec) return fn(g);
      return this.ts.withDomain(String(g.rec.id), 'save', (rec) => fn({ ...g, rec }));
    });
  }

  private find(name: string, snap: string): Snapshot {
    const s = this.deps.store.get(name, snap);
    if (!s) throw new XenoError('NO_SUCH_SNAPSHOT', `${name} has no snapshot named '${snap}' (xeno snapshot-list ${name})`);
    return s;
  }

  /** The guest's config now names `disks` (by vdev): in its running record and its definition. */
  setDisks(g: Guest, disks: Map<string, { target: string; format: DiskSpec['format'] }>): void {
    const apply = (c: DomainConfig): DomainConfig => ({ ...c, disks: c.disks.map((d) => (disks.has(d.vdev) ? { ...d, ...disks.get(d.vdev)! } : d)) });
    if (g.rec) {
      const fresh = this.ts.deps.store.get(g.rec.id);
      if (fresh) this.ts.deps.store.update(g.rec.id, { config: apply(fresh.config) });
    }
    const defs = this.deps.definitions();
    const def = defs?.store.get(g.name);
    if (defs && def) defs.store.put({ ...def, config: apply(def.config) });
  }

  // ---- create -------------------------------------------------------------------------------

  async create(dom: string, snap: string, opts: { memory?: boolean; quiesce?: boolean } = {}): Promise<SnapshotInfo> {
    if (!SNAP_NAME_RE.test(snap)) throw new XenoError('BAD_REQUEST', `invalid snapshot name '${snap}': use 1-64 characters of [A-Za-z0-9_.-], not starting with . or -`);
    return this.locked(dom, async (g) => {
      if (this.deps.store.get(g.name, snap)) throw new XenoError('SNAPSHOT_EXISTS', `${g.name} already has a snapshot named '${snap}'`);
      const config = g.rec ? this.ts.deps.store.get(g.rec.id)!.config : g.def!.config;
      const disks = writableDisks(config);
      if (disks.length === 0 && !opts.memory) throw new XenoError('BAD_REQUEST', `${g.name} has no writable disk to snapshot (use --memory for its RAM state)`);
      const taken = g.rec ? await this.createRunning(g, g.rec, config, disks, snap, opts) : await this.createStopped(g, config, disks, snap, opts);
      this.ts.event(g.rec ?? null, 'snapshot', `snapshot ${snap} of ${g.name} taken (${taken.memory ? 'disks and memory' : 'disks only'}${taken.quiesced ? ', quiesced' : ''})`);
      return this.info(g.name, taken);
    });
  }

  private async createStopped(g: Guest, config: DomainConfig, disks: DiskSpec[], snap: string, opts: { memory?: boolean; quiesce?: boolean }): Promise<Snapshot> {
    if (opts.memory) throw new XenoError('BAD_STATE', `${g.name} is not running: it has no memory state to snapshot (leave out --memory)`);
    if (opts.quiesce) throw new XenoError('BAD_STATE', `${g.name} is not running: there is nothing to quiesce (leave out --quiesce)`);
    const made: string[] = [];
    try {
      for (const d of disks) {
        const ov = overlayPathFor(d.target);
        await createOverlay(ov, d.target, d.format);
        made.push(ov);
      }
    } catch (e) {
      for (const f of made) rmSync(f, { force: true });
      throw e;
    }
    const s = this.record(g.name, snap, config, disks, { memory: false, stateFile: null, vmState: 'stopped', quiesced: false });
    this.setDisks(g, new Map(disks.map((d, i) => [d.vdev, { target: made[i]!, format: 'qcow2' as const }])));
    return s;
  }

  private record(name: string, snap: string, config: DomainConfig, disks: DiskSpec[], rest: Pick<Snapshot, 'memory' | 'stateFile' | 'vmState' | 'quiesced'>): Snapshot {
    const s: Snapshot = {
      domain: name, name: snap, parent: this.deps.store.current(name), created: Date.now() / 1000, config,
      disks: disks.map((d) => ({ vdev: d.vdev, file: d.target, format: d.format })), ...rest,
    };
    this.deps.store.add(s);
    return s;
  }

  private stateFileFor(name: string, snap: string): string {
    return path.join(this.ts.deps.config.stateDir, 'snapshots', name, `${snap}.xsave`);
  }

  private async createRunning(g: Guest, rec: DomainRecord, config: DomainConfig, disks: DiskSpec[], snap: string, opts: { memory?: boolean; quiesce?: boolean }): Promise<Snapshot> {
    const vm = this.ts.liveOf(rec).vm;
    const wasRunning = rec.state === 'running';
    const overlays: Array<{ disk: DiskSpec; file: string; node: string; top?: string }> = [];
    let paused = false;
    let frozen = false;
    let switched = false;
    const stateFile = opts.memory ? this.stateFileFor(g.name, snap) : null;
    try {
      for (const d of disks) {
        const file = overlayPathFor(d.target);
        await createOverlay(file, d.target, d.format);
        overlays.push({ disk: d, file, node: `snap-${randomBytes(4).toString('hex')}` });
        this.deps.access?.add(rec.runDir, [{ path: file, perm: 'rw' }]);
        await addOverlayNode(vm, overlays.at(-1)!.node, file);
      }
      for (const o of overlays) o.top = await activeNodeOf(vm, o.disk.target);
      if (opts.quiesce) {
        if (!this.deps.agent) throw new XenoError('BAD_STATE', `cannot quiesce ${g.name}: xeno has no guest agent channel to it, so no agent answers guest-fsfreeze-freeze; the snapshot was not taken (leave out --quiesce for a crash-consistent one)`);
        await this.deps.agent.freeze(rec);
        frozen = true;
      }
      if (opts.memory && wasRunning) {
        await vm.pause();
        paused = true;
      }
      await vm.command('transaction', { actions: overlays.map((o) => ({ type: 'blockdev-snapshot', data: { node: o.top, overlay: o.node } })) });
      switched = true;
      if (frozen) {
        frozen = false;
        await this.deps.agent!.thaw(rec);
      }
      if (stateFile) {
        mkdirSync(path.dirname(stateFile), { recursive: true, mode: 0o700 });
        const memoryMb = rec.config.memory;
        await saveVmToFile(vm, stateFile, {
          xenoVersion: XENO_VERSION, config, name: rec.name, uuid: rec.uuid, machineType: rec.machineType,
          qemuVersion: this.ts.deps.backend.caps.qemuVersion, accel: rec.accel, state: wasRunning ? 'running' : 'paused',
          memoryMb, maxmemMb: rec.config.maxmem, created: new Date().toISOString(),
        });
        // The state is written: from `postmigrate` `cont` is the way back (it reactivates the disks).
        await vm.command('cont');
        if (!wasRunning) await vm.pause();
        paused = false;
      }
    } catch (e) {
      if (frozen) await this.deps.agent!.thaw(rec).catch(() => undefined);
      let undo = '';
      if (switched) {
        // The overlays are live: merge them straight back so the guest is as before.
        if ((await vm.runState()) === 'postmigrate') await vm.command('cont').catch(() => undefined);
        try {
          for (const o of overlays) await activeCommit(vm, o.file, o.disk.target, `undo-${o.node}`);
        } catch (e2) {
          undo = `; merging the new overlays back failed too (${errorMessage(e2)}): the guest writes to them now`;
          this.setDisks(g, new Map(overlays.map((o) => [o.disk.vdev, { target: o.file, format: 'qcow2' as const }])));
        }
      }
      for (const o of overlays) await delNode(vm, o.node);
      if (!undo) for (const o of overlays) rmSync(o.file, { force: true });
      if (stateFile) rmSync(stateFile, { force: true });
      if (paused && wasRunning && !vm.exited) await vm.resume().catch(() => undefined);
      throw new XenoError(isXenoError(e) ? e.code : 'QEMU_ERROR', `snapshot ${snap} of ${g.name} failed: ${errorMessage(e)}${undo || `; nothing was kept, the guest keeps ${wasRunning ? 'running' : 'paused'}`}`);
    }
    const s = this.record(g.name, snap, config, disks, { memory: !!stateFile, stateFile, vmState: wasRunning ? 'running' : 'paused', quiesced: !!opts.quiesce });
    this.setDisks(g, new Map(overlays.map((o) => [o.disk.vdev, { target: o.file, format: 'qcow2' as const }])));
    return s;
  }

  // ---- list ---------------------------------------------------------------------------------

  private info(name: string, s: Snapshot, depth = 0): SnapshotInfo {
    return {
      name: s.name, parent: s.parent, created: s.created, memory: s.memory, quiesced: s.quiesced, vmState: s.vmState,
      current: this.deps.store.current(name) === s.name, depth, disks: s.disks,
    };
  }

  /** The tree, depth-first, children oldest first. */
  list(dom: string): SnapshotInfo[] {
    const g = this.guest(dom);
    const all = this.deps.store.list(g.name);
    const out: SnapshotInfo[] = [];
    const walk = (parent: string | null, depth: number) => {
      for (const s of all.filter((x) => x.parent === parent)) {
        out.push(this.info(g.name, s, depth));
        walk(s.name, depth + 1);
      }
    };
    walk(null, 0);
    return out;
  }

  // ---- revert -------------------------------------------------------------------------------

  /**
   * Back to `snap`: fresh overlays on its frozen images (the present ones are discarded). A running
   * guest needs a snapshot with memory: its QEMU is replaced by one loaded from the snapshot's
   * state, resumed as it was then; a stopped guest's disks are switched (and with memory it starts
   * from the state).
   */
  async revert(dom: string, snap: string): Promise<{ name: string; snapshot: string; id?: number; state: 'running' | 'paused' | 'stopped' }> {
    const g0 = this.guest(dom);
    const s = this.find(g0.name, snap);
    if (g0.rec && !s.memory) throw new XenoError('BAD_STATE', `${g0.name} runs and snapshot ${snap} has no memory state: shut the guest down to revert its disks, or take snapshots with --memory`);
    return this.locks.run(g0.name, async () => {
      const g = this.guest(dom);
      const config = g.rec ? this.ts.deps.store.get(g.rec.id)!.config : g.def!.config;
      const info = s.stateFile ? await openSaveFile(s.stateFile) : undefined;
      const fresh = new Map<string, string>();
      try {
        for (const d of s.disks) {
          const ov = overlayPathFor(d.file);
          await createOverlay(ov, d.file, d.format);
          fresh.set(d.vdev, ov);
        }
      } catch (e) {
        for (const f of fresh.values()) rmSync(f, { force: true });
        throw e;
      }
      if (g.rec) await this.ts.destroy(String(g.rec.id));
      // The discarded present: overlays no snapshot holds.
      const held = new Set(this.deps.store.list(g.name).flatMap((x) => x.disks.map((d) => d.file)));
      for (const d of writableDisks(config)) if (isOverlay(d.target) && !held.has(d.target) && fresh.has(d.vdev)) rmSync(d.target, { force: true });
      this.deps.store.setCurrent(g.name, s.name);
      const disks = new Map([...fresh].map(([vdev, target]) => [vdev, { target, format: 'qcow2' as const }]));
      this.setDisks({ ...g, rec: undefined }, disks);
      this.ts.event(null, 'snapshot-revert', `${g.name} reverted to snapshot ${snap}`);
      if (!info) return { name: g.name, snapshot: snap, state: 'stopped' as const };
      // Start from the snapshot's state, with its config and the fresh overlays.
      const base: DomainConfig = { ...s.config, disks: s.config.disks.map((d) => (disks.has(d.vdev) ? { ...d, ...disks.get(d.vdev)! } : d)) };
      const launch = this.ts.validateForCreate({ ...base, maxmem: info.header.maxmemMb, memory: Math.min(base.memory, info.header.maxmemMb) });
      const incoming = await openIncomingFile(info);
      const rec = await incoming.launch((fd) => this.ts.create(launch, { incoming: true, incomingFd: fd, state: 'starting', machineType: info.header.machineType }));
      try {
        const vm = this.ts.liveOf(rec).vm;
        await loadVmFromFile(vm, info.path, info, undefined, incoming.load);
        const paused = info.header.state === 'paused';
        if (!paused) await vm.resume();
        this.ts.deps.store.update(rec.id, { state: paused ? 'paused' : 'running', config: base });
        return { name: g.name, snapshot: snap, id: rec.id, state: paused ? ('paused' as const) : ('running' as const) };
      } catch (e) {
        await incoming.load.prepared?.close(); // (loadVmFromFile closes it; not when it never ran)
        await this.ts.destroy(String(rec.id)).catch(() => undefined);
        throw new XenoError(isXenoError(e) ? e.code : 'QEMU_ERROR', `revert of ${g.name} to ${snap}: its disks are reverted but its memory state could not be loaded (${errorMessage(e)}); the guest is stopped`);
      }
    });
  }

  // ---- delete -------------------------------------------------------------------------------

  /** Forget `snap`, merging its layer with the one above it (the guest may run on meanwhile). */
  async delete(dom: string, snap: string): Promise<{ name: string; snapshot: string; merged: string[] }> {
    if (!DOMAIN_NAME_RE.test(snap) && !SNAP_NAME_RE.test(snap)) throw new XenoError('BAD_REQUEST', `invalid snapshot name '${snap}'`);
    return this.locked(dom, async (g) => {
      const s = this.find(g.name, snap);
      const merged = await mergeSnapshot(this, g, s);
      this.ts.event(g.rec ?? null, 'snapshot-delete', `snapshot ${snap} of ${g.name} deleted${merged.length ? ` (${merged.join(', ')})` : ''}`);
      return { name: g.name, snapshot: snap, merged };
    });
  }

  close(): void {
    this.deps.store.close();
  }

  /** For snapshot-merge.ts. */
  get store(): SnapshotStore {
    return this.deps.store;
  }

  get toolstack(): Toolstack {
    return this.ts;
  }

  configOf(g: Guest): DomainConfig {
    return g.rec ? this.ts.deps.store.get(g.rec.id)!.config : g.def!.config;
  }
}

export type { Guest };
