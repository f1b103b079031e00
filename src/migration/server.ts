/**
 * The relocation server (xend-relocation-server): the target side of `xm migrate`. Started by
 * xenod when `(xend-relocation-server yes)`, on xend-relocation-address:xend-relocation-port, and
 * only with a key (`xeno-relocation-key-file`): without one it refuses to start. A peer must match
 * xend-relocation-hosts-allow (its address, or its name as the resolver gives it) and then prove
 * the key; the protocol is described in protocol.ts.
 */
import { execFile } from 'node:child_process';
import { lookupService } from 'node:dns/promises';
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
import { Channel, PROTOCOL_VERSION, loadRelocationKey, newNonce, proofMatches, sessionTlsKey, sourceProof, targetProof, writePskDir, type Msg } from './protocol.js';
import { incomingPort, useTlsPsk, waitMigration } from './qemu-side.js';

const execFileP = promisify(execFile);

/** An IPv4-mapped IPv6 address (::ffff:1.2.3.4) as plain IPv4. */
export function plainAddress(a: string | undefined): string {
  return (a ?? '').replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, '');
}

/** xend-relocation-hosts-allow: empty allows all; else any regex matching the address or a name. */
export function hostAllowed(patterns: string[], candidates: string[]): boolean {
  if (patterns.length === 0) return true;
  return patterns.some((p) => {
    const re = new RegExp(p);
    return candidates.some((c) => re.test(c));
  });
}

async function namesOf(address: string): Promise<string[]> {
  try {
    const r = await Promise.race([
      lookupService(address, 0),
      new Promise<never>((_, rej) => setTimeout(() => rej(new Error('timeout')), 2000)),
    ]);
    return r.hostname && r.hostname !== address ? [r.hostname] : [];
  } catch {
    return [];
  }
}

export class RelocationServer {
  private server?: net.Server;
  private readonly sessions = new Set<Channel>();
  private machineTypes?: Promise<Set<string>>;

  private constructor(
    private readonly ts: Toolstack,
    private readonly config: DaemonConfig,
    private readonly log: Logger,
    private readonly key: Buffer,
  ) {}

  /**
   * Start the server when the config asks for it; null when it does not, or (logged as an error)
   * when there is no usable key: xeno never runs an unauthenticated relocation server.
   */
  static async start(ts: Toolstack, config: DaemonConfig, log: Logger): Promise<RelocationServer | null> {
    if (!config.relocationServer) return null;
    let key: Buffer;
    try {
      key = loadRelocationKey(config.relocationKeyFile);
    } catch (e) {
      log.error(`relocation server NOT started: ${errorMessage(e)}`);
      return null;
    }
    const s = new RelocationServer(ts, config, log, key);
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

  private async accept(sock: net.Socket): Promise<void> {
    const addr = plainAddress(sock.remoteAddress);
    const ch = new Channel(sock, `the source ${addr}`);
    this.sessions.add(ch);
    try {
      const allow = this.config.relocationHostsAllow;
      if (allow.length && !hostAllowed(allow, [addr]) && !hostAllowed(allow, await namesOf(addr))) {
        this.log.warn(`relocation: refused ${addr}: not in xend-relocation-hosts-allow`);
        ch.refuse('BAD_REQUEST', `the target refuses connections from ${addr}: it is not in its xend-relocation-hosts-allow`);
        return;
      }
      await this.session(ch, addr, sock);
    } catch (e) {
      this.log.warn(`relocation session from ${addr} ended: ${errorMessage(e)}`);
      ch.refuse(isXenoError(e) ? e.code : 'INTERNAL', errorMessage(e));
    } finally {
      this.sessions.delete(ch);
    }
  }

  private async session(ch: Channel, addr: string, sock: net.Socket): Promise<void> {
    // Authentication, both ways.
    const hello = await ch.recv('hello', 10_000);
    if (hello.proto !== PROTOCOL_VERSION) {
      throw new XenoError('BAD_REQUEST', `the target speaks relocation protocol ${PROTOCOL_VERSION}, the source ${hello.proto}`);
    }
    if (typeof hello.nonce !== 'string' || !/^[0-9a-f]{64}$/.test(hello.nonce)) throw new XenoError('BAD_REQUEST', 'malformed hello');
    const nonce = newNonce();
    ch.send({ t: 'hello', proto: PROTOCOL_VERSION, xeno: XENO_VERSION, nonce, proof: targetProof(this.key, hello.nonce, nonce) });
    const auth = await ch.recv('auth', 10_000);
    if (!proofMatches(sourceProof(this.key, nonce, hello.nonce), auth.proof)) {
      this.log.warn(`relocation: ${addr} failed authentication (different key)`);
      throw new XenoError('BAD_REQUEST', 'authentication failed: the hosts do not share the same relocation key');
    }
    ch.send({ t: 'welcome', host: os.hostname() });

    const prep = await ch.recv('prepare', 30_000);
    const rec = await this.prepare(prep);
    const done = { rec, committed: false };
    try {
      await this.receive(ch, prep, rec, sessionTlsKey(this.key, hello.nonce, nonce), plainAddress(sock.localAddress), done);
    } catch (e) {
      if (done.committed) throw e;
      const left = await this.ts.destroy(String(rec.id)).then(
        () => 'the incoming domain was destroyed',
        (e2: unknown) => `the incoming domain could not be destroyed: ${errorMessage(e2)}`,
      );
      this.ts.event(rec, 'migrate-in-failed', `incoming migration of ${rec.name} from ${addr} failed: ${errorMessage(e)}; ${left}`);
      throw e;
    }
  }

  /** Every check that can refuse, then the domain created, QEMU waiting for the stream. */
  private async prepare(p: Extract<Msg, { t: 'prepare' }>): Promise<DomainRecord> {
    const caps = this.ts.deps.backend.caps;
    if (typeof p.name !== 'string' || !p.config || typeof p.memoryMb !== 'number') throw new XenoError('BAD_REQUEST', 'malformed prepare');
    if (compareQemuVersions(caps.qemuVersion, p.qemuVersion) < 0) {
      throw new XenoError('QEMU_ERROR', `the target has QEMU ${caps.qemuVersion}, older than the source's ${p.qemuVersion}`);
    }
    if (p.machineType !== caps.machineType && !(await this.supportedMachineTypes()).has(p.machineType)) {
      throw new XenoError('QEMU_ERROR', `the target's QEMU ${caps.qemuVersion} does not offer machine type ${p.machineType}`);
    }
    const config: DomainConfig = { ...p.config, name: p.name, uuid: p.uuid };
    // QEMU is started with the RAM size the stream has (the source's boot size).
    const launch: DomainConfig = { ...config, maxmem: p.memoryMb, memory: Math.min(config.memory, p.memoryMb) };
    // create() checks name, files and memory under the host-memory lock, and undoes itself on failure.
    const rec = await this.ts.create(launch, { incoming: true, state: 'starting', machineType: p.machineType }).catch((e: unknown) => {
      throw isXenoError(e) ? new XenoError(e.code, `the target refuses: ${e.message}`) : e;
    });
    return rec;
  }

  private async receive(
    ch: Channel,
    p: Extract<Msg, { t: 'prepare' }>,
    rec: DomainRecord,
    tlsKey: string,
    localAddr: string,
    state: { committed: boolean },
  ): Promise<void> {
    const vm = this.ts.liveOf(rec).vm;
    const dir = writePskDir(path.join(rec.runDir, 'tls'), tlsKey);
    let done: Extract<Msg, { t: 'done' }>;
    try {
      await useTlsPsk(vm, 'server', dir);
      const host = net.isIPv6(localAddr) ? `[${localAddr}]` : localAddr;
      await vm.command('migrate-incoming', { uri: `tcp:${host}:0` });
      const port = await incomingPort(vm);
      ch.send({ t: 'prepared', domid: rec.id, port });
      done = await ch.recv('done');
      await waitMigration(vm, { timeoutMs: 5 * 60_000 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    ch.send({ t: 'loaded' });
    try {
      await ch.recv('commit', 60_000);
    } catch (e) {
      if (isXenoError(e) && e.details?.abort) throw e; // the source resumes its own copy
      // The source may have committed on its side: never run the guest, never destroy it.
      state.committed = true;
      this.ts.deps.store.update(rec.id, { state: 'paused' });
      this.ts.event(rec, 'migrate-in', `incoming migration of ${rec.name}: the source went away before committing (${errorMessage(e)}); the guest is kept PAUSED here as domain ${rec.id}: check the source before unpausing it`);
      throw e;
    }
    state.committed = true;
    const paused = done.paused === true || p.state === 'paused';
    if (!paused) await vm.resume();
    this.ts.deps.store.update(rec.id, { state: paused ? 'paused' : 'running', config: { ...p.config, name: p.name, uuid: p.uuid } });
    ch.send({ t: 'ok', domid: rec.id, state: paused ? 'paused' : 'running' });
    this.ts.event(rec, 'migrate-in', `${rec.name} migrated in as domain ${rec.id} (${paused ? 'paused' : 'running'})`);
    ch.close();
  }

  private supportedMachineTypes(): Promise<Set<string>> {
    this.machineTypes ??= execFileP(this.ts.deps.backend.binary, ['-machine', 'help']).then(
      ({ stdout }) => new Set(stdout.split('\n').slice(1).map((l) => l.trim().split(/\s+/)[0]!).filter(Boolean)),
      () => new Set<string>(),
    );
    return this.machineTypes;
  }
}
