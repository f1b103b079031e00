/**
 * The QMP side of save and restore. QEMU runs sandboxed (`spawn=deny`: no `exec:` URI) and Node
 * cannot pass file descriptors over QMP (`getfd`), so:
 *  - save: xenod listens on a Unix socket in the domain's run directory, QEMU `migrate`s to
 *    `unix:PATH` and xenod writes what arrives into a SaveWriter (hashing, trailer, fsync, rename);
 *  - restore: QEMU, started with `-incoming defer`, is either given the save file at its spawn
 *    (fd 3, `migrate-incoming fd:3`: it reads the payload itself while xenod hashes the file), or
 *    listens after `migrate-incoming unix:PATH` and xenod streams the payload in, hashing it.
 * The bytes themselves move in a worker thread (offload.ts, io-worker.ts); this side is QMP.
 * Neither function pauses or resumes the guest: the caller decides (the guest is paused before a
 * save, and resumed after a restore only once the checksum has been verified).
 */
import { chmodSync, closeSync, rmSync } from 'node:fs';
import path from 'node:path';
import { XenoError, errorMessage, isXenoError } from '../../common/errors.js';
import { INCOMING_FD, type Vm } from '../../hypervisor/backend.js';
import { qemuPaths } from '../../hypervisor/qemu/qemu-backend.js';
import { liftBandwidthCap, waitMigration, type QueryMigrate } from '../../hypervisor/qemu/migration-status.js';
import type { ProgressFn, SaveFileInfo, SaveHeader } from './format.js';
import { RestoreSource, SaveSink } from './offload.js';
import { openPayloadFd } from './reader.js';
import type { SaveWriterResult } from './writer.js';

const SUN_PATH_MAX = 107;

export interface MigrateStats {
  /** QEMU's own figures for the migration, ms (absent when QEMU did not report them). */
  totalTimeMs?: number;
  downtimeMs?: number;
  /** Wall time of the whole operation as seen by xenod, ms. */
  elapsedMs: number;
}

export interface SaveVmResult extends SaveWriterResult, MigrateStats {}

export interface RestoreVmResult extends MigrateStats {
  bytes: number;
  sha256: string;
}

export interface MigrateOptions {
  /** Socket path (default: save.sock / restore.sock in the VM's run dir). */
  socketPath?: string;
  /** How often query-migrate is polled, ms (default 5). */
  pollMs?: number;
  /** Give up after this long, ms (default 30 min). */
  timeoutMs?: number;
  /**
   * Cancels the save (destroy): it ends with the signal's reason, the partial file removed, and
   * QEMU left to its killer (no migrate_cancel wait).
   */
  signal?: AbortSignal;
}

export interface SaveOptions extends MigrateOptions {
  /**
   * Called once the file is open and xenod listens, just before `migrate`: where the caller pauses
   * the guest, so a destination that cannot be written never pauses it.
   */
  beforeMigrate?: () => Promise<void>;
}

export interface LoadOptions extends MigrateOptions {
  /** A read-ahead started (RestoreSource.prepare) while QEMU was starting; closed in all cases. */
  prepared?: RestoreSource;
  /** QEMU's own descriptor of the file, positioned at the payload (INCOMING_FD): QEMU reads it. */
  qemuFd?: number;
}


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** save.sock is xenod's, in the run dir; restore.sock is QEMU's, in its own dir (qemuPaths). */
function socketPathFor(vm: Vm, name: 'save.sock' | 'restore.sock', opts: MigrateOptions): string {
  const p = opts.socketPath ?? (name === 'save.sock' ? path.join(vm.runDir, name) : qemuPaths(vm.runDir).restore);
  if (Buffer.byteLength(p) > SUN_PATH_MAX) throw new XenoError('HOST_ERROR', `socket path ${p} is longer than ${SUN_PATH_MAX} bytes: use a shorter state directory`);
  return p;
}



/** After a failure: cancel, and wait (bounded) until QEMU's migration is no longer running. */
async function settleAfterFailure(vm: Vm): Promise<void> {
  if (vm.exited) return;
  try {
    await vm.command('migrate_cancel', undefined, 5000);
  } catch {
    /* not migrating, or QEMU gone */
  }
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline && !vm.exited) {
    try {
      const q = await vm.command<QueryMigrate>('query-migrate', undefined, 2000);
      if (!q.status || ['completed', 'failed', 'cancelled', 'none'].includes(q.status)) return;
    } catch {
      return;
    }
    await sleep(10);
  }
}

/**
 * Write the VM's state to `file`: QEMU migrates into a Unix socket xenod listens on, and what
 * arrives goes through a SaveWriter. On success the file is complete and durable and QEMU is in
 * `postmigrate` (quit it, or `cont` for a checkpoint); on failure the partial file is removed and
 * QEMU's migration is cancelled, leaving the guest as it was (paused if the caller paused it).
 */
export async function saveVmToFile(vm: Vm, file: string, header: SaveHeader, onProgress?: ProgressFn, opts: SaveOptions = {}): Promise<SaveVmResult> {
  const t0 = performance.now();
  const sockPath = socketPathFor(vm, 'save.sock', opts);
  let ramTotal = header.maxmemMb * 1048576;
  let ramDone = 0;
  let bytes = 0;
  const report = () => onProgress?.({ bytes, done: ramDone, total: ramTotal });
  // The bytes go through a worker thread (offload.ts): file, socket and hash off the event loop.
  const sink = await SaveSink.open(file, header, sockPath, (n) => {
    bytes = n;
    report();
  });
  try {
    // QEMU runs unprivileged: let its group connect (the run dir is root's, group the QEMU user's).
    chmodSync(sockPath, 0o770);
    await liftBandwidthCap(vm);
    await opts.beforeMigrate?.();
    if (opts.signal?.aborted) throw opts.signal.reason;
    await vm.command('migrate', { uri: `unix:${sockPath}` });
    const q = await waitMigration(vm, {
      pollMs: opts.pollMs ?? 5,
      timeoutMs: opts.timeoutMs,
      wantStats: true,
      abort: () => (opts.signal?.aborted ? (opts.signal.reason as Error) : sink.error),
      onPoll: (m) => {
        if (m.ram?.total) ramTotal = m.ram.total;
        if (m.ram?.total !== undefined && m.ram.remaining !== undefined) ramDone = m.ram.total - m.ram.remaining;
        if (m.status === 'completed') ramDone = ramTotal;
        report();
      },
    });
    // QEMU closes its end once the stream is written; wait for the last bytes to reach the file.
    await sink.settled();
    if (sink.error) throw sink.error;
    if (opts.signal?.aborted) throw opts.signal.reason;
    const res = await sink.finish();
    bytes = res.payloadBytes;
    ramDone = ramTotal;
    report();
    return { ...res, totalTimeMs: q['total-time'], downtimeMs: q.downtime, elapsedMs: performance.now() - t0 };
  } catch (e0) {
    if (opts.signal?.aborted) {
      await sink.abort();
      throw opts.signal.reason;
    }
    // When writing the file failed, QEMU only sees the socket close (and may say so first): let the
    // copy settle, then report its cause rather than QEMU's broken pipe.
    await sink.settled(2000);
    const e = sink.error ?? e0;
    await sink.abort();
    await settleAfterFailure(vm);
    throw isXenoError(e) ? e : new XenoError('HOST_ERROR', `save to ${file} failed: ${errorMessage(e)}`);
  }
}

/**
 * Load a save file into a VM started with `-incoming defer` (`incoming: true`), and resolve once the
 * file's checksum has matched and QEMU reports the incoming migration completed. The VM is left
 * paused. On a checksum or format error (SAVE_FORMAT) the VM holds state that must not run: destroy
 * it. Two ways in:
 *  - `qemuFd` (a VM launched with the file as LaunchRequest.incomingFd, `prepared` with
 *    qemuReads): QEMU reads the payload from the file itself (`migrate-incoming fd:N`) while the
 *    worker hashes the same file beside it, so no byte is copied through xenod;
 *  - otherwise QEMU listens on a Unix socket and the worker streams the payload in, hashing it.
 */
export async function loadVmFromFile(vm: Vm, file: string, info: SaveFileInfo, onProgress?: ProgressFn, opts: LoadOptions = {}): Promise<RestoreVmResult> {
  const t0 = performance.now();
  const sockPath = opts.qemuFd === undefined ? socketPathFor(vm, 'restore.sock', opts) : undefined;
  if (sockPath) rmSync(sockPath, { force: true });
  let source = opts.prepared;
  try {
    if (!source && opts.qemuFd !== undefined) throw new XenoError('INTERNAL', 'a restore from an inherited fd needs its hash prepared');
    source ??= await RestoreSource.prepare(file, info);
    await vm.command('migrate-incoming', { uri: sockPath ? `unix:${sockPath}` : `fd:${opts.qemuFd}` });
    let streamed: { bytes: number; sha256: string };
    try {
      streamed = sockPath ? await source.stream(sockPath, onProgress) : await source.verify(onProgress);
    } catch (e) {
      if (isXenoError(e) && e.code === 'SAVE_FORMAT') throw e;
      const why = await qemuSide(vm);
      throw new XenoError('QEMU_ERROR', `QEMU did not accept the saved state from ${file}: ${why ?? errorMessage(e)}`);
    }
    let q: QueryMigrate;
    try {
      q = await waitMigration(vm, { pollMs: opts.pollMs ?? 5, timeoutMs: opts.timeoutMs });
    } catch (e) {
      const why = await qemuSide(vm);
      throw new XenoError('QEMU_ERROR', `QEMU could not load the saved state from ${file}: ${why ?? errorMessage(e)}`);
    }
    return { ...streamed, totalTimeMs: q['total-time'], downtimeMs: q.downtime, elapsedMs: performance.now() - t0 };
  } finally {
    await source?.close();
    if (sockPath) rmSync(sockPath, { force: true });
  }
}

/**
 * A checked save file opened for a QEMU to read at its spawn (LaunchRequest.incomingFd), with its
 * hash already running in a worker (started while QEMU starts). `launch` starts that QEMU with the
 * descriptor; then `load` goes to loadVmFromFile.
 */
export interface IncomingFile {
  load: LoadOptions;
  /**
   * Run `start` (which spawns QEMU with `fd` as its incomingFd), then close xenod's copy of the
   * descriptor (QEMU holds its own); on failure the hash is stopped too.
   */
  launch<T>(start: (fd: number) => Promise<T>): Promise<T>;
}

export async function openIncomingFile(info: SaveFileInfo): Promise<IncomingFile> {
  const { fd, dev, ino } = openPayloadFd(info);
  let prepared: RestoreSource;
  try {
    prepared = await RestoreSource.prepare(info.path, info, { dev, ino });
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  return {
    load: { prepared, qemuFd: INCOMING_FD },
    async launch(start) {
      try {
        return await start(fd);
      } catch (e) {
        await prepared.close();
        throw e;
      } finally {
        closeSync(fd);
      }
    },
  };
}

/** What QEMU says went wrong with an incoming migration (it exits when a load fails). */
async function qemuSide(vm: Vm): Promise<string | undefined> {
  if (vm.exited) return 'QEMU exited while loading it (incompatible or damaged migration stream)';
  try {
    const q = await vm.command<QueryMigrate>('query-migrate', undefined, 2000);
    if (q['error-desc']) return q['error-desc'];
    if (q.status === 'failed') return 'migration failed';
  } catch {
    return 'QEMU exited while loading it (incompatible or damaged migration stream)';
  }
  return undefined;
}
