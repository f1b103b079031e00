/**
 * The source side of `xm migrate DOM HOST [-l] [-p PORT]`: authenticates to the target's relocation
 * server, has it prepare an incoming domain, sends the guest's state with QEMU's precopy migration
 * over TLS-PSK, and lets the target run it before freeing the local copy (protocol.ts). Without
 * `live` the guest is paused first and copied frozen; with `live` it runs during the copy and is
 * only stopped for QEMU's final pass (bounded by QEMU's max downtime, 300 ms by default).
 */
import net from 'node:net';
import path from 'node:path';
import { XenoError, errorMessage, isXenoError } from '../common/errors.js';
import { crashPoint } from '../common/test-crash.js';
import { XENO_VERSION } from '../common/version.js';
import type { DaemonConfig } from '../model/daemon-config.js';
import { handOverGrants } from '../host/qemu-user.js';
import { refuseStateCopyAfterUnplug } from '../toolstack/runtime.js';
import type { DomainRecord } from '../toolstack/store.js';
import type { Toolstack } from '../toolstack/toolstack.js';
import { rmSync } from 'node:fs';
import { Channel } from './channel.js';
import { DEFAULT_RELOCATION_PORT, PROTOCOL_VERSION, type Msg, controlKeys, loadRelocationKey, newNonce, proofMatches, sessionTlsKey, sourceProof, targetProof, versionMismatch, writePskDir } from './protocol.js';
import { backToOwnState, bootMemoryMb, cancelMigration, dropTlsPsk, migrationFigures, useTlsPsk, waitMigration, type MigrationTuning, type QueryMigrate } from './qemu-side.js';
import { PostcopySwitch, checkRequestTuning } from './postcopy.js';
import { tcgLiveHazard } from './tcg-hazards.js';
import { clearOutgoing, markOutgoing } from './recovery.js';
import { forgetCarriedSnapshots, snapshotsToCarry, type CarriedSnapshots } from './snapshot-carry.js';
import { StorageCopySource, sharedOnly, storageOffer, type StorageOffer } from './storage-copy.js';
import { diskIdentities, refuseUnsafeCache } from './storage-checks.js';

export interface MigrateRequest {
  host: string;
  port?: number;
  live?: boolean;
  /** Copy every writable disk to the target (no shared storage): storage-copy.ts. */
  copyStorage?: boolean;
  /** Migrate even with disks whose cache mode is unsafe on shared storage (storage-checks.ts). */
  force?: boolean;
  /** Live only: switch to postcopy when QEMU's first full pass did not converge (policy: README, Migration). */
  postcopy?: boolean;
  /** multifd: this many TLS channels for the RAM (1 = the single stream). */
  parallel?: number;
  /** Throttle the vcpus of a guest that dirties RAM faster than the link; default on for a live precopy, off with postcopy. */
  autoConverge?: boolean;
  /** QEMU's downtime-limit: the longest stop-and-copy a precopy may end with (default 300 ms). */
  maxDowntimeMs?: number;
}

/** How far QEMU's stream is (query-migrate's RAM figures, bytes; status `mirroring`: the disks of a storage copy), for a page or a progress bar. */
export interface MigrateProgress {
  status: string;
  transferred: number;
  remaining: number;
  total: number;
}

export interface MigrateResult {
  name: string;
  /** Its domain id here (gone). */
  fromId: number;
  /** Its new domain id on the target. */
  id: number;
  host: string;
  port: number;
  live: boolean;
  /** Set when live was asked but the copy was done paused, and why (tcg-hazards.ts: a multi-vcpu or multifd copy under TCG). */
  pausedWhy?: string;
  /** The guest's state on the target (a paused guest stays paused). */
  state: 'running' | 'paused';
  /** ms from the request to the guest running (or paused) on the target. */
  elapsedMs: number;
  /** QEMU's own figures: whole migration, and the final stop-and-copy, ms. */
  totalTimeMs?: number;
  downtimeMs?: number;
  /** ms from QEMU's completion here to the target having resumed the guest (commit round trip). */
  resumeMs: number;
  /** ms the guest did not run: offline, from the pause to the resume on the target; live, downtime + resumeMs. */
  guestDowntimeMs?: number;
  /** Bytes of RAM QEMU sent. */
  bytes?: number;
  /** The stream as it ran: whether it switched to postcopy, multifd channels, auto-converge, the vcpu throttle reached (%). */
  postcopy?: boolean;
  parallel?: number;
  autoConverge?: boolean;
  throttlePercent?: number;
  /** Bytes QEMU sent over the multifd channels. */
  multifdBytes?: number;
  /** Where the time went, ms: connect + handshake, the target's prepare (its QEMU started, TLS set up there), QEMU's stream, the commit round trip. */
  phasesMs?: { handshake: number; prepare: number; stream: number; commit: number };
}

function connect(host: string, port: number, timeoutMs = 10_000): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new XenoError('TIMEOUT', `no answer from ${host}:${port} within ${timeoutMs / 1000} s (is xenod's relocation server reachable there?)`));
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      resolve(sock);
    });
    sock.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const why =
        e.code === 'ECONNREFUSED'
          ? `connection refused: the relocation server is not running on ${host}:${port} (the target's xenod needs (xend-relocation-server yes) and a xeno-relocation-key-file)`
          : e.code === 'ENOTFOUND' || e.code === 'EAI_AGAIN'
            ? `unknown host ${host}`
            : `cannot connect to ${host}:${port}: ${e.message}`;
      reject(new XenoError('HOST_ERROR', why));
    });
  });
}

export class Migrator {
  constructor(
    private readonly ts: Toolstack,
    private readonly config: DaemonConfig,
  ) {}

  async migrate(dom: string, req: MigrateRequest, onProgress?: (p: MigrateProgress) => void): Promise<MigrateResult> {
    const t0 = performance.now();
    const port = req.port ?? DEFAULT_RELOCATION_PORT;
    const live = req.live === true;
    const where = `${req.host}:${port}`;
    const tuning = checkRequestTuning(req, live);
    const key = loadRelocationKey(this.config.relocationKeyFile);
    return this.ts.withDomain(dom, 'migrate', async (rec) => {
      refuseStateCopyAfterUnplug(rec, this.ts.deps.backend.caps.qemuVersion, 'migrate');
      // What QEMU 7.2 under TCG loses in a live copy (tcg-hazards.ts): done paused, or refused.
      const pausedWhy = tcgLiveHazard(this.ts.deps.backend.caps.accel, rec.config.vcpus, tuning, live);
      const frozen = pausedWhy !== undefined;
      // With --copy-storage nothing is shared read-write: the target gets its own copy.
      if (!req.copyStorage) refuseUnsafeCache(rec.config, req.force === true);
      if (pausedWhy) this.ts.event(rec, 'migrate', `${rec.name} is migrated paused (offline), not live: ${pausedWhy}`);
      // A destroy of this domain aborts the migration (before it waits for the domain's lock).
      const result = await this.ts.longOperation(rec.id, 'migration', (signal) => this.migrateLocked(rec, req, {
        t0, port, live: live && !frozen, where, key, signal, onProgress, tuning: frozen ? { ...tuning, autoConverge: false } : tuning,
      }));
      return pausedWhy ? { ...result, pausedWhy } : result;
    });
  }

  private async migrateLocked(
    rec: DomainRecord,
    req: MigrateRequest,
    { t0, port, live, where, key, signal, onProgress, tuning }: { t0: number; port: number; live: boolean; where: string; key: Buffer; signal: AbortSignal; onProgress?: (p: MigrateProgress) => void; tuning: MigrationTuning },
  ): Promise<MigrateResult> {
    const vm = this.ts.liveOf(rec).vm;
    const wasRunning = rec.state === 'running';
    const what = `migration of ${rec.name} to ${where}`;
    const untouched = (e: unknown) => new XenoError(isXenoError(e) ? e.code : 'HOST_ERROR', `${what} failed: ${errorMessage(e)}; the guest was not touched and keeps ${wasRunning ? 'running' : 'paused'} here`);

    // Connect, authenticate both ways, and have the target prepare: nothing is touched yet.
    let ch: Channel;
    let prepared: Extract<Msg, { t: 'prepared' }>;
    let storage: StorageOffer | undefined;
    let snapshots: CarriedSnapshots | undefined;
    const dir = path.join(rec.runDir, 'mig-tls');
    let sourceTls: Promise<string> | undefined;
    let handshakeAt = 0;
    let preparedAt = 0;
    try {
      ch = new Channel(await connect(req.host, port), `the target ${where}`, this.config.relocationTimeoutS * 1000);
    } catch (e) {
      throw untouched(e);
    }
    const onAbort = () => ch.fail(new XenoError('BAD_STATE', `the migration of ${rec.name} was cancelled: the domain is being destroyed`, { preempted: true }));
    signal.addEventListener('abort', onAbort);
    const handshake = setTimeout(() => ch.fail(new XenoError('TIMEOUT', `the target ${where} did not complete the handshake within 10 s`)), 10_000);
    try {
      const nonce = newNonce();
      ch.send({ t: 'hello', proto: PROTOCOL_VERSION, xeno: XENO_VERSION, nonce });
      const hello = await ch.recv('hello');
      if (hello.proto !== PROTOCOL_VERSION) throw versionMismatch(PROTOCOL_VERSION, hello.proto, 'target');
      if (typeof hello.nonce !== 'string' || !/^[0-9a-f]{64}$/.test(hello.nonce)) throw new XenoError('BAD_REQUEST', 'malformed hello from the target');
      if (!proofMatches(targetProof(key, nonce, hello.nonce), hello.proof)) {
        throw new XenoError('BAD_REQUEST', 'authentication failed: the target does not hold the same relocation key (xeno-relocation-key-file)');
      }
      ch.send({ t: 'auth', proof: sourceProof(key, hello.nonce, nonce) });
      ch.secure(controlKeys(key, nonce, hello.nonce, 'source'));
      await ch.recv('welcome');
      clearTimeout(handshake);
      const tlsKey = sessionTlsKey(key, nonce, hello.nonce);
      handshakeAt = performance.now();
      const memoryMb = (await bootMemoryMb(vm)) ?? rec.config.maxmem;
      storage = req.copyStorage ? await storageOffer(rec.config) : undefined;
      snapshots = snapshotsToCarry(this.ts, rec.name, !!req.copyStorage);
      ch.send({
        t: 'prepare', name: rec.name, uuid: rec.uuid, config: rec.config, machineType: rec.machineType,
        qemuVersion: this.ts.deps.backend.caps.qemuVersion, memoryMb, state: wasRunning ? 'running' : 'paused',
        // Shared disks are identified for the target's check; with --copy-storage only the read-only ones are shared.
        disks: diskIdentities(storage ? sharedOnly(rec.config) : rec.config, true),
        ...(storage ? { storage } : {}),
        ...(snapshots ? { snapshots } : {}),
        ...(tuning.postcopy || (tuning.parallel ?? 1) > 1 ? { tuning: { postcopy: tuning.postcopy, parallel: tuning.parallel } } : {}),
      });
      // This QEMU's side of the stream's TLS is set up while the target starts its QEMU.
      sourceTls = (async () => useTlsPsk(vm, 'client', writePskDir(dir, tlsKey), tuning))();
      sourceTls.catch(() => undefined);
      prepared = await ch.recv('prepared', 120_000);
      if ((tuning.postcopy && prepared.tuning?.postcopy !== true) || ((tuning.parallel ?? 1) > 1 && prepared.tuning?.parallel !== tuning.parallel)) {
        throw new XenoError('HOST_ERROR', "the target's xenod did not set its QEMU up for postcopy / parallel channels (an older xeno there?)");
      }
      preparedAt = performance.now();
      this.ts.deps.log.info({ domain: rec.name }, `migration of ${rec.name} out: QEMU ${await sourceTls}`);
    } catch (e) {
      // Tell the target why (a wrong key shows in its log too), then close.
      clearTimeout(handshake);
      signal.removeEventListener('abort', onAbort);
      if (sourceTls) {
        await sourceTls.catch(() => undefined);
        await dropTlsPsk(vm);
        rmSync(dir, { recursive: true, force: true });
      }
      ch.refuse(isXenoError(e) ? e.code : 'HOST_ERROR', `the source gave up: ${errorMessage(e)}`);
      throw untouched(e);
    }

    // From here the guest is involved: any failure before commit puts it back as it was. The
    // intent is on disk first, so a xenod killed from here on resolves it at start (recovery.ts).
    markOutgoing(this.ts, rec, { to: where, wasRunning, copyStorage: !!storage, committed: false, since: Date.now() });
    this.ts.deps.store.update(rec.id, { state: 'migrating' });
    let pausedAt: number | undefined;
    let committed = false;
    const pc = new PostcopySwitch(vm, ch, tuning.postcopy === true, this.ts.deps.log, rec.name);
    let completedAt = 0;
    const copy = storage ? new StorageCopySource(vm, this.ts.deps.log, rec.name) : undefined;
    try {
      if (copy && storage) {
        if (!prepared.nbd) throw new XenoError('HOST_ERROR', 'the target did not export the disks for the storage copy');
        await copy.start(storage, prepared.nbd, req.host);
        ch.send({ t: 'mirroring' });
        await copy.ready(() => ch.error, onProgress);
        ch.send({ t: 'storage-ready' });
      }
      if (!live && wasRunning) {
        await vm.pause();
        pausedAt = performance.now();
      }
      const host = net.isIPv6(req.host) ? `[${req.host}]` : req.host;
      await vm.command('migrate', { uri: `tcp:${host}:${prepared.port}` });
      const onPoll = (m: QueryMigrate) => {
        onProgress?.({ status: m.status ?? 'setup', transferred: m.ram?.transferred ?? 0, remaining: m.ram?.remaining ?? 0, total: m.ram?.total ?? 0 });
        const before = pc.switched;
        pc.onPoll(m);
        // From the switch the target runs the guest: a xenod restarted here must never resume this copy.
        if (!before && pc.switched) markOutgoing(this.ts, rec, { to: where, wasRunning, copyStorage: !!storage, committed: true, since: Date.now() });
      };
      const completed = await waitMigration(vm, { abort: () => ch.error ?? pc.error, onPoll });
      completedAt = performance.now();
      // After a switch the target runs the guest already: its word first, then the usual ending.
      if (pc.switched) committed = true;
      const runningAt = await pc.running();
      // QEMU's figures may lag its `completed`: fetched while the target takes over, not before.
      const figures = migrationFigures(vm, completed);
      await copy?.finish();
      ch.send({ t: 'done', paused: !wasRunning });
      await ch.recv('loaded', 5 * 60_000);
      markOutgoing(this.ts, rec, { to: where, wasRunning, copyStorage: !!storage, committed: true, since: Date.now() });
      committed = true;
      ch.send({ t: 'commit' });
      const ok = await ch.recv('ok', 60_000);
      const resumedAt = performance.now();
      ch.close();
      const q = await figures;
      rmSync(dir, { recursive: true, force: true });
      // A xenod killed from here on still has the committed intent: recovery.ts does what follows.
      crashPoint('migrate-out:confirmed');
      forgetCarriedSnapshots(this.ts, rec.name, snapshots);
      // Shared storage: the target's QEMU holds the disks now, their ACL entries are its (qemu-user.ts).
      if (!storage) handOverGrants(rec.runDir, rec.config);
      await this.ts.releaseLocked(rec, 'migrate', `${rec.name} (${rec.id}) migrated ${live ? 'live' : 'offline'} to ${where} (domain ${ok.domid} there); its QEMU here has exited`);
      const resumeMs = resumedAt - completedAt;
      const guestDown = !wasRunning ? undefined : runningAt !== undefined ? runningAt - pc.switchedAt! : pausedAt !== undefined ? resumedAt - pausedAt : q.downtime !== undefined ? q.downtime + resumeMs : undefined;
      return {
        name: rec.name, fromId: rec.id, id: ok.domid, host: req.host, port, live, state: ok.state,
        elapsedMs: resumedAt - t0, totalTimeMs: q['total-time'], downtimeMs: q.downtime, resumeMs,
        guestDowntimeMs: guestDown,
        bytes: q.ram?.transferred,
        postcopy: pc.switched, parallel: tuning.parallel ?? 1, autoConverge: tuning.autoConverge === true, throttlePercent: q['cpu-throttle-percentage'] ?? 0, multifdBytes: q.ram?.['multifd-bytes'],
        phasesMs: { handshake: handshakeAt - t0, prepare: preparedAt - handshakeAt, stream: completedAt - preparedAt, commit: resumeMs },
      };
    } catch (e) {
      rmSync(dir, { recursive: true, force: true });
      signal.removeEventListener('abort', onAbort);
      if (committed || pc.switched) {
        // The target may be running it: keep this copy paused, never run it twice.
        ch.close();
        clearOutgoing(this.ts, rec);
        this.ts.deps.store.update(rec.id, { state: 'paused' });
        const msg = pc.switched && !committed
          ? `${what} failed after the switch to postcopy (${errorMessage(e)}): the guest's RAM is split between both hosts and neither copy can run on; it is kept PAUSED here, check ${req.host}`
          : `${what}: the outcome is unknown (${errorMessage(e)}): the guest was handed over but the target did not confirm; it is kept PAUSED here, check ${req.host} before unpausing either copy`;
        this.ts.event(rec, 'migrate-failed', msg);
        throw new XenoError('HOST_ERROR', msg);
      }
      if (!ch.closed) {
        try {
          ch.send({ t: 'abort', reason: errorMessage(e) });
        } catch {
          /* gone */
        }
        ch.close();
      }
      let left: string;
      if (signal.aborted) {
        // Destroy is waiting for the lock and will kill QEMU: cancel, do not bother resuming.
        await cancelMigration(vm, 3000);
        clearOutgoing(this.ts, rec);
        this.ts.deps.store.update(rec.id, { state: wasRunning ? 'running' : 'paused' });
        this.ts.event(rec, 'migrate-failed', `${what} cancelled: the domain is being destroyed`);
        throw new XenoError('BAD_STATE', `${what} cancelled: the domain was destroyed during it`);
      }
      try {
        await cancelMigration(vm);
        await copy?.abort();
        await dropTlsPsk(vm);
        await backToOwnState(vm, wasRunning);
        clearOutgoing(this.ts, rec);
        this.ts.deps.store.update(rec.id, { state: wasRunning ? 'running' : 'paused' });
        left = `the guest keeps ${wasRunning ? 'running' : 'paused'} here`;
      } catch (e2) {
        clearOutgoing(this.ts, rec);
        this.ts.deps.store.update(rec.id, { state: 'paused' });
        left = vm.exited ? 'its QEMU here exited' : `the guest could not be resumed here (${errorMessage(e2)}) and is paused`;
      }
      const msg = `${what} failed: ${errorMessage(e)}; ${left}`;
      this.ts.event(rec, 'migrate-failed', msg);
      throw new XenoError(isXenoError(e) ? e.code : 'HOST_ERROR', msg);
    }
  }
}
