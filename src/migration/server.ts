/**
 * The relocation server (xend-relocation-server): the target side of `xm migrate`. Started by
 * xenod when `(xend-relocation-server yes)`, on xend-relocation-address:xend-relocation-port, and
 * only with a key (`xeno-relocation-key-file`): without one it refuses to start. A peer must match
 * xend-relocation-hosts-allow (hosts-allow.ts: the whole address, or a forward-confirmed name) and
 * then prove the key; the protocol and its bounds are described in protocol.ts. A refused or
 * failed peer's socket is destroyed at once.
 */
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import { XenoError, errorMessage, isXenoError } from '../common/errors.js';
import { XENO_VERSION } from '../common/version.js';
import type { DaemonConfig } from '../model/daemon-config.js';
import type { DomainConfig } from '../model/domain-config.js';
import { compareQemuVersions } from '../toolstack/savefile/format.js';
import type { DomainRecord } from '../toolstack/store.js';
import type { Toolstack } from '../toolstack/toolstack.js';
import { Channel } from './channel.js';
import { compileHostsAllow, peerAllowed } from './hosts-allow.js';
import { MAX_PARALLEL, POSTCOPY_MULTIFD, PROTOCOL_VERSION, controlKeys, loadRelocationKey, newNonce, proofMatches, sessionTlsKey, sourceProof, targetProof, versionMismatch, writePskDir, type Msg, type StreamTuning } from './protocol.js';
import { incomingPort, resetTuning, useTlsPsk, waitMigration, type MigrationTuning } from './qemu-side.js';
import { markIncoming, withoutIncoming } from './recovery.js';
import { adoptCarriedSnapshots, checkCarriedSnapshots } from './snapshot-carry.js';
import { createTargetDisks, exportDisks, followCopy, keepCopiedImages, markCopiedImages, removeCopiedImages, removeImages, unexportDisks } from './storage-copy-target.js';
import { checkDiskIdentities } from './storage-checks.js';
import { sharedOnly } from './storage-copy.js';

const execFileP = promisify(execFile);

/** Connections still in the handshake at once; more are destroyed on accept. */
export const MAX_UNAUTHENTICATED = 32;
/** Authenticated incoming migrations at once (each holds a QEMU); more are refused BUSY. */
export const MAX_SESSIONS = 4;
/** From accept to the end of the handshake. */
export const HANDSHAKE_MS = 10_000;

/** An IPv4-mapped IPv6 address (::ffff:1.2.3.4) as plain IPv4. */
export function plainAddress(a: string | undefined): string {
  return (a ?? '').replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, '');
}

/** What the layers above want done at an incoming migration's commit (a pool records where the guest runs now). */
export interface RelocationHooks {
  /** Before the source is told ok; bounded (HOOK_MS) and never fails the migration. */
  committed?: (name: string, domid: number) => Promise<void>;
}

const HOOK_MS = 3000;

export class RelocationServer {
  private server?: net.Server;
  private readonly sessions = new Set<Channel>();
  private unauthenticated = 0;
  private active = 0;
  private floodLogged = false;
  private machineTypes?: Promise<Set<string>>;

  private constructor(
    private readonly ts: Toolstack,
    private readonly config: DaemonConfig,
    private readonly log: Logger,
    private readonly key: Buffer,
    private readonly hooks: RelocationHooks,
  ) {}

  /**
   * Start the server when the config asks for it; null when it does not, or (logged as an error)
   * when there is no usable key: xeno never runs an unauthenticated relocation server.
   */
  static async start(ts: Toolstack, config: DaemonConfig, log: Logger, hooks: RelocationHooks = {}): Promise<RelocationServer | null> {
    if (!config.relocationServer) return null;
    let key: Buffer;
    try {
      key = loadRelocationKey(config.relocationKeyFile);
      compileHostsAllow(config.relocationHostsAllow);
    } catch (e) {
      log.error(`relocation server NOT started: ${errorMessage(e)}`);
      return null;
    }
    const s = new RelocationServer(ts, config, log, key, hooks);
    await s.listen();
    return s;
  }

  get port(): number {
    const a = this.server?.address();
    return a && typeof a === 'object' ? a.port : this.config.relocationPort;
  }

  private listen(): Promise<void> {
    const server = net.createServer((sock) => void this.accept(sock));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', (e) => {
        this.log.error(`relocation server NOT started: cannot listen on ${this.config.relocationAddress || '*'}:${this.config.relocationPort}: ${e.message}`);
        this.server = undefined;
        resolve();
        void reject;
      });
      server.listen({ port: this.config.relocationPort, host: this.config.relocationAddress || undefined }, () => {
        this.log.info(`relocation server listening on ${this.config.relocationAddress || '*'}:${this.port} (protocol ${PROTOCOL_VERSION}, PSK authentication)`);
        resolve();
      });
    });
  }

  async close(): Promise<void> {
    for (const c of this.sessions) c.close();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }

  private accept(sock: net.Socket): void {
    if (this.unauthenticated >= MAX_UNAUTHENTICATED) {
      // A flood: drop it on the floor, before any parsing or lookup (logged once per burst).
      sock.destroy();
      if (!this.floodLogged) this.log.warn(`relocation: more than ${MAX_UNAUTHENTICATED} unauthenticated connections at once: dropping new ones`);
      this.floodLogged = true;
      return;
    }
    this.floodLogged = false;
    this.unauthenticated++;
    let counted = true;
    const authenticated = () => {
      if (counted) this.unauthenticated--;
      counted = false;
    };
    sock.once('close', authenticated);
    void this.run(sock, authenticated);
  }

  private async run(sock: net.Socket, authenticated: () => void): Promise<void> {
    const addr = plainAddress(sock.remoteAddress);
    const ch = new Channel(sock, `the source ${addr}`, this.config.relocationTimeoutS * 1000);
    this.sessions.add(ch);
    const deadline = setTimeout(() => ch.fail(new XenoError('TIMEOUT', `the source ${addr} did not authenticate within ${HANDSHAKE_MS / 1000} s`)), HANDSHAKE_MS);
    try {
      if (!(await peerAllowed(this.config.relocationHostsAllow, addr))) {
        this.log.warn(`relocation: refused ${addr}: not in xend-relocation-hosts-allow`);
        ch.refuse('BAD_REQUEST', `the target refuses connections from ${addr}: it is not in its xend-relocation-hosts-allow`);
        return;
      }
      const nonces = await this.handshake(ch, addr);
      clearTimeout(deadline);
      authenticated();
      if (this.active >= MAX_SESSIONS) throw new XenoError('BUSY', `the target already runs ${MAX_SESSIONS} incoming migrations: try again later`);
      this.active++;
      try {
        await this.session(ch, addr, sock, nonces);
      } finally {
        this.active--;
      }
    } catch (e) {
      this.log.warn(`relocation session from ${addr} ended: ${errorMessage(e)}`);
      ch.refuse(isXenoError(e) ? e.code : 'INTERNAL', errorMessage(e));
    } finally {
      clearTimeout(deadline);
      authenticated();
      this.sessions.delete(ch);
    }
  }

  /** Both proofs, then the channel secured; the nonces for the keys that follow. */
  private async handshake(ch: Channel, addr: string): Promise<{ source: string; target: string }> {
    const hello = await ch.recv('hello');
    if (hello.proto !== PROTOCOL_VERSION) {
      this.log.warn(`relocation: ${addr} speaks relocation protocol ${String(hello.proto)}, this host ${PROTOCOL_VERSION}: refused`);
      throw versionMismatch(PROTOCOL_VERSION, hello.proto, 'source');
    }
    if (typeof hello.nonce !== 'string' || !/^[0-9a-f]{64}$/.test(hello.nonce)) throw new XenoError('BAD_REQUEST', 'malformed hello');
    const nonce = newNonce();
    ch.send({ t: 'hello', proto: PROTOCOL_VERSION, xeno: XENO_VERSION, nonce, proof: targetProof(this.key, hello.nonce, nonce) });
    const auth = await ch.recv('auth');
    if (!proofMatches(sourceProof(this.key, nonce, hello.nonce), auth.proof)) {
      this.log.warn(`relocation: ${addr} failed authentication (wrong proof: a different key, or not a xeno source): refused`);
      throw new XenoError('BAD_REQUEST', 'authentication failed: the hosts do not share the same relocation key');
    }
    ch.secure(controlKeys(this.key, hello.nonce, nonce, 'target'));
    ch.send({ t: 'welcome', host: os.hostname() });
    return { source: hello.nonce, target: nonce };
  }

  private async session(ch: Channel, addr: string, sock: net.Socket, nonces: { source: string; target: string }): Promise<void> {
    const prep = await ch.recv('prepare', 60_000);
    const { rec, config } = await this.prepare(prep, addr);
    const done = { rec, committed: false };
    try {
      await this.receive(ch, prep, rec, config, sessionTlsKey(this.key, nonces.source, nonces.target), plainAddress(sock.localAddress), done);
    } catch (e) {
      if (done.committed) throw e;
      const left = await this.ts.destroy(String(rec.id)).then(
        () => 'the incoming domain was destroyed',
        (e2: unknown) => `the incoming domain could not be destroyed: ${errorMessage(e2)}`,
      );
      removeCopiedImages(rec);
      this.ts.event(rec, 'migrate-in-failed', `incoming migration of ${rec.name} from ${addr} failed: ${errorMessage(e)}; ${left}`);
      throw e;
    }
  }

  /** Every check that can refuse, then the domain created, QEMU waiting for the stream. */
  private async prepare(p: Extract<Msg, { t: 'prepare' }>, from: string): Promise<{ rec: DomainRecord; config: DomainConfig }> {
    const caps = this.ts.deps.backend.caps;
    if (typeof p.name !== 'string' || !p.config || typeof p.memoryMb !== 'number') throw new XenoError('BAD_REQUEST', 'malformed prepare');
    if (compareQemuVersions(caps.qemuVersion, p.qemuVersion) < 0) {
      throw new XenoError('QEMU_ERROR', `the target has QEMU ${caps.qemuVersion}, older than the source's ${p.qemuVersion}`);
    }
    if (p.machineType !== caps.machineType && !(await this.supportedMachineTypes()).has(p.machineType)) {
      throw new XenoError('QEMU_ERROR', `the target's QEMU ${caps.qemuVersion} does not offer machine type ${p.machineType}`);
    }
    checkCarriedSnapshots(this.ts, p.name, p.snapshots);
    // --copy-storage: checked, then the disks made here and named by the config (storage-copy-target.ts).
    const disks = p.storage ? await createTargetDisks(this.ts, p.name, p.config, p.storage) : undefined;
    const undoDisks = (e: unknown): never => {
      if (disks) removeImages(disks.images);
      throw e;
    };
    // The config kept after commit is the one validated here, exactly as a create would.
    const config = refusing(() => {
      try {
        const c = this.ts.validateConfig({ ...(disks?.config ?? p.config), name: p.name, uuid: p.uuid });
        // Shared storage: the target must see the source's very disks, not just files at the same paths.
        checkDiskIdentities(p.storage ? sharedOnly(c) : c, p.disks);
        return c;
      } catch (e) {
        return undoDisks(e);
      }
    });
    // QEMU is started with the RAM size the stream has (the source's boot size).
    const launch: DomainConfig = { ...config, maxmem: p.memoryMb, memory: Math.min(config.memory, p.memoryMb) };
    // create() checks name, files and memory under the host-memory lock, and undoes itself on failure.
    const rec = await this.ts.create(launch, { incoming: true, state: 'starting', machineType: p.machineType }).catch((e: unknown) => undoDisks(asRefusal(e)));
    // Never committed until `commit`: a xenod restarted before that destroys it (recovery.ts).
    markIncoming(this.ts, rec, from);
    if (disks) markCopiedImages(this.ts, rec, disks.images);
    return { rec, config };
  }

  private async receive(
    ch: Channel,
    p: Extract<Msg, { t: 'prepare' }>,
    rec: DomainRecord,
    config: DomainConfig,
    tlsKey: string,
    localAddr: string,
    state: { committed: boolean },
  ): Promise<void> {
    const vm = this.ts.liveOf(rec).vm;
    const dir = writePskDir(path.join(rec.runDir, 'tls'), tlsKey);
    let done: Extract<Msg, { t: 'done' }>;
    const tuning = checkTuning(p.tuning);
    let postcopy = false;
    // Capabilities back off while the source commits (QMP runs it before the `cont`): never rejects.
    let tuningReset: Promise<void> = Promise.resolve();
    try {
      this.ts.deps.log.info({ domain: rec.name }, `migration of ${rec.name} in: QEMU ${await useTlsPsk(vm, 'server', dir, tuning)}`);
      const host = net.isIPv6(localAddr) ? `[${localAddr}]` : localAddr;
      await vm.command('migrate-incoming', { uri: `tcp:${host}:0` });
      const port = await incomingPort(vm);
      const copied = (p.storage?.copy ?? []).map((d) => ({ vdev: d.vdev, file: rec.config.disks.find((x) => x.vdev === d.vdev)!.target }));
      const nbd = p.storage ? await exportDisks(vm, localAddr, copied) : undefined;
      ch.send({ t: 'prepared', domid: rec.id, port, ...(nbd ? { nbd } : {}), tuning });
      if (p.storage) await followCopy(ch);
      const next = await ch.recvOneOf(['postcopy', 'done'], 30 * 60_000);
      if (next.t === 'postcopy') {
        // The source has stopped the guest: from here it lives here, never destroyed by a failure.
        postcopy = true;
        state.committed = true;
        this.ts.deps.store.update(rec.id, { extra: withoutIncoming(rec) });
        // (during INMIGRATE `cont` makes QEMU start the guest as soon as the switch arrives)
        if (p.state === 'running') await vm.command('cont');
        ch.send({ t: 'running' });
        this.ts.event(rec, 'migrate-in', `incoming migration of ${rec.name}: switched to postcopy, the guest runs here while its pages arrive`);
      }
      done = next.t === 'done' ? next : await ch.recv('done', 30 * 60_000);
      await waitMigration(vm, { timeoutMs: 5 * 60_000, abort: () => ch.error });
      tuningReset = resetTuning(vm);
      if (p.storage) await unexportDisks(vm, copied.map((d) => d.vdev));
    } catch (e) {
      if (postcopy) {
        // Its RAM is split between both hosts: nothing here can finish it (QEMU 7.2's postcopy recovery is not driven).
        keepCopiedImages(rec);
        this.ts.deps.store.update(rec.id, { state: 'paused', extra: withoutIncoming(rec) });
        this.ts.event(rec, 'migrate-in-failed', `incoming postcopy migration of ${rec.name} failed after the switch (${errorMessage(e)}): part of its RAM is still on the source; kept here as domain ${rec.id}, which cannot run on`);
      }
      throw e;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    ch.send({ t: 'loaded' });
    try {
      await ch.recv('commit', 60_000);
    } catch (e) {
      if (postcopy) {
        // It has run here since the switch: the source's copy is stale, this one is the guest.
        state.committed = true;
        keepCopiedImages(rec);
        this.ts.deps.store.update(rec.id, { state: p.state === 'running' ? 'running' : 'paused', config, extra: withoutIncoming(rec) });
        this.ts.event(rec, 'migrate-in', `${rec.name} migrated in by postcopy as domain ${rec.id}; the source went away before committing (${errorMessage(e)}), its copy there is stale`);
        throw e;
      }
      if (isXenoError(e) && e.details?.abort) throw e; // the source resumes its own copy
      // The source may have committed on its side: never run the guest, never destroy it.
      state.committed = true;
      keepCopiedImages(rec);
      adoptCarriedSnapshots(this.ts, rec.name, p.snapshots);
      this.ts.deps.store.update(rec.id, { state: 'paused', extra: withoutIncoming(rec) });
      this.ts.event(rec, 'migrate-in', `incoming migration of ${rec.name}: the source went away before committing (${errorMessage(e)}); the guest is kept PAUSED here as domain ${rec.id}: check the source before unpausing it`);
      throw e;
    }
    state.committed = true;
    keepCopiedImages(rec);
    adoptCarriedSnapshots(this.ts, rec.name, p.snapshots);
    const paused = done.paused === true || p.state === 'paused';
    if (!paused && !postcopy) await vm.resume();
    this.ts.deps.store.update(rec.id, { state: paused ? 'paused' : 'running', config, extra: withoutIncoming(rec) });
    await this.runCommittedHook(rec);
    ch.send({ t: 'ok', domid: rec.id, state: paused ? 'paused' : 'running' });
    this.ts.event(rec, 'migrate-in', `${rec.name} migrated in as domain ${rec.id} (${paused ? 'paused' : 'running'})`);
    ch.close();
    await tuningReset;
  }

  /** The committed hook, bounded: a slow or failing pool store delays the ok by HOOK_MS at most. */
  private async runCommittedHook(rec: { id: number; name: string }): Promise<void> {
    const hook = this.hooks.committed;
    if (!hook) return;
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${HOOK_MS} ms`)), HOOK_MS)));
    await Promise.race([hook(rec.name, rec.id), bound])
      .catch((e: unknown) => this.log.warn(`migration of ${rec.name}: its commit was not recorded at once (${errorMessage(e)}); the next sync records it`))
      .finally(() => clearTimeout(timer));
  }

  private supportedMachineTypes(): Promise<Set<string>> {
    this.machineTypes ??= execFileP(this.ts.deps.backend.binary, ['-machine', 'help']).then(
      ({ stdout }) => new Set(stdout.split('\n').slice(1).map((l) => l.trim().split(/\s+/)[0]!).filter(Boolean)),
      () => new Set<string>(),
    );
    return this.machineTypes;
  }
}

/** The source's stream tuning, checked as any input from the wire. */
export function checkTuning(t: StreamTuning | undefined): MigrationTuning {
  if (t === undefined) return {};
  if (typeof t !== 'object' || t === null) throw new XenoError('BAD_REQUEST', 'malformed tuning in prepare');
  if (t.postcopy !== undefined && typeof t.postcopy !== 'boolean') throw new XenoError('BAD_REQUEST', 'malformed tuning.postcopy in prepare');
  if (t.parallel !== undefined && !(Number.isInteger(t.parallel) && t.parallel >= 1 && t.parallel <= MAX_PARALLEL)) {
    throw new XenoError('BAD_REQUEST', `tuning.parallel must be an integer from 1 to ${MAX_PARALLEL}`);
  }
  if (t.postcopy && (t.parallel ?? 1) > 1) throw new XenoError('BAD_REQUEST', POSTCOPY_MULTIFD);
  return { postcopy: t.postcopy === true, parallel: t.parallel ?? 1 };
}

/** A refusal of the target's checks, said as such to the source. */
function asRefusal(e: unknown): unknown {
  return isXenoError(e) ? new XenoError(e.code, `the target refuses: ${e.message}`) : e;
}

function refusing<T>(check: () => T): T {
  try {
    return check();
  } catch (e) {
    throw asRefusal(e);
  }
}
