/**
 * The relocation protocol (xm migrate), version 2: a small JSON-lines control channel over TCP
 * between the source xenod (client.ts) and the target xenod's relocation server (server.ts).
 * Xen's relocation had no authentication; here both ends prove they hold the same pre-shared key
 * (`xeno-relocation-key-file`) by an HMAC over fresh nonces from both sides, before anything else
 * is said. After that proof every control message, both ways, carries an HMAC-SHA256 under a
 * per-direction key derived with HKDF from the key and both nonces, over a per-direction sequence
 * number and the message (channel.ts): a man in the middle who relays the handshake can neither
 * alter, inject, replay, reorder nor drop a message undetected. QEMU's own migration stream is
 * encrypted and authenticated with TLS-PSK under a third derived key (new per migration; the
 * file's key never reaches QEMU). Storage is shared: both hosts see the same disk paths; only RAM
 * and device state move.
 *
 *   source xenod                                target xenod (relocation server)
 *   ------------                                --------------------------------
 *   connect HOST:PORT ------------------------> peer checked against hosts-allow (else destroyed)
 *   hello {proto, nonce_s} -------------------> a different proto is refused with a clear error
 *                       <---------------------- hello {proto, nonce_t, proof_t = HMAC(k, "target"|nonce_s|nonce_t)}
 *   checks proto and proof_t (a wrong key stops here)
 *   auth {proof_s = HMAC(k, "source"|nonce_t|nonce_s)} ->  checks proof_s (else refused, destroyed)
 *   ======== from here every line is  HMAC(k_dir, seq_dir | json) json  ========
 *                       <---------------------- welcome {host}
 *   prepare {name, uuid, config, machineType,
 *            qemuVersion, memoryMb, state,
 *            disks: [{vdev, id|size+sample|...}],
 *            snapshots?: {list, current},
 *            tuning?: {postcopy, parallel}} ----> checks: the disks are the source's (storage-checks.ts:
 *                                                same identity, not just the same path), the snapshot tree's files
 *                                                are here (snapshot-carry.ts), QEMU not older, machine type offered, then
 *                                                the config goes through the same validation as a
 *                                                create (toolstack.create -> validateForCreate, under
 *                                                the host-memory lock); starts QEMU with -incoming
 *                                                defer, TLS-PSK creds, migrate-incoming tcp:LOCAL:0
 *                                                (and postcopy-ram / multifd as `tuning` asks)
 *                       <---------------------- prepared {domid, port, tuning}
 *   offline: pause the guest
 *   QMP migrate tcp:HOST:port (TLS-PSK) ======> QEMU's precopy stream (iterative RAM copy) ======>
 *   query-migrate until completed; with --postcopy, after QEMU's first full pass without
 *   converging: migrate-start-postcopy, and once QEMU says postcopy-active (the guest stopped here)
 *   postcopy ---------------------------------> runs the guest while its pages still arrive
 *                       <---------------------- running   (from here the guest lives on the target)
 *   done {paused} ----------------------------> waits for QEMU's incoming migration to complete
 *                       <---------------------- loaded            (guest there, still paused)
 *   commit -----------------------------------> resumes it (or leaves it paused if it was paused)
 *                       <---------------------- ok {domid, state}
 *   releases its copy (QEMU quits, vifs unplugged)
 *
 * Bounds: before authentication a line is at most 64 KiB, the handshake must end within 10 s, at
 * most 32 connections may be unauthenticated at once (more are destroyed on accept) and at most 4
 * authenticated sessions run at once (more are refused as BUSY). Both ends set TCP keepalive and,
 * once authenticated, ping every 10 s: 60 s without a word from the peer ends the session.
 *
 * Failures: any `error {code, message}` (either way), a failed integrity check, a silent peer or a
 * closed connection ends the session. Before `commit` the target destroys its half-made domain and
 * the source cancels QEMU's migration and resumes its guest (left paused if it was paused):
 * nothing is lost, nothing is left half-made. After `commit` without `ok` (the connection died in
 * that window) the outcome cannot be known on either side: the source keeps its copy paused and
 * the target keeps its copy paused (not run twice, not lost); both say so, and the admin unpauses
 * the right one. A xenod killed mid-migration is resolved at its next start (recovery.ts).
 * Postcopy: from `postcopy` on, the target runs the guest and the source never resumes it (its
 * intent is marked committed at the switch); a failure after it leaves part of the RAM on each
 * side, which neither can run on: both keep their copy (paused) and say so (QEMU's postcopy
 * recovery is not driven by xeno).
 */
import { createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ERROR_CATALOGUE, XenoError, type ErrorCode } from '../common/errors.js';
import type { DomainConfig } from '../model/domain-config.js';
import type { NbdOffer, StorageOffer } from './storage-copy.js';
import type { CarriedSnapshots } from './snapshot-carry.js';
import type { DiskIdentity } from './storage-checks.js';
import { DH_PARAMS_FILE, dhParamsPem } from './tls-dh.js';

export const PROTOCOL_VERSION = 2;
export const DEFAULT_RELOCATION_PORT = 8002;
/** The TLS-PSK identity both QEMUs use. */
export const PSK_IDENTITY = 'xeno';
/** QOM id of the TLS credentials object in either QEMU. */
export const TLS_OBJECT_ID = 'xenomig0';

/** Most multifd channels a migration may ask for. */
export const MAX_PARALLEL = 16;
/** Why --postcopy and --parallel are not offered together. */
export const POSTCOPY_MULTIFD = 'postcopy and parallel (multifd) channels cannot be combined: QEMU 7.2 accepts the pair but fails at the switch to postcopy (later QEMUs refuse it outright); pick one';

/** What both QEMUs must agree on for the stream (qemu-side.ts MigrationTuning). */
export interface StreamTuning {
  postcopy?: boolean;
  parallel?: number;
}

export type Msg =
  | { t: 'hello'; proto: number; xeno: string; nonce: string; proof?: string }
  | { t: 'auth'; proof: string }
  | { t: 'welcome'; host: string }
  | { t: 'prepare'; name: string; uuid: string; config: DomainConfig; machineType: string; qemuVersion: string; memoryMb: number; state: 'running' | 'paused'; disks?: DiskIdentity[]; storage?: StorageOffer; snapshots?: CarriedSnapshots; tuning?: StreamTuning }
  // `tuning` echoes what the target's QEMU was set up for: the source checks it matches its own
  | { t: 'prepared'; domid: number; port: number; nbd?: NbdOffer; tuning?: StreamTuning }
  // postcopy only: the source's QEMU switched (the guest stopped there); the target runs it and says so
  | { t: 'postcopy' }
  | { t: 'running' }
  // --copy-storage only (storage-copy.ts): the mirrors started, then all in step
  | { t: 'mirroring' }
  | { t: 'storage-ready' }
  | { t: 'done'; paused: boolean }
  | { t: 'loaded' }
  | { t: 'commit' }
  | { t: 'ok'; domid: number; state: 'running' | 'paused' }
  | { t: 'abort'; reason: string }
  | { t: 'ping' }
  | { t: 'error'; code: string; message: string };

// ---- the key ------------------------------------------------------------------------------

/**
 * Reads the pre-shared key: hex (e.g. `openssl rand -hex 32`), at least 16 bytes, in a file no one
 * but its owner may read.
 */
export function loadRelocationKey(file: string | undefined): Buffer {
  if (!file) {
    throw new XenoError('CONFIG_INVALID', 'no relocation key: set (xeno-relocation-key-file /etc/xeno/relocation.psk) in the daemon config (the same key on both hosts; create it with `openssl rand -hex 32`)');
  }
  let text: string;
  try {
    const st = statSync(file);
    if ((st.mode & 0o077) !== 0) throw new XenoError('CONFIG_INVALID', `relocation key file ${file} is readable by others (mode ${(st.mode & 0o777).toString(8)}): chmod 600 it`);
    text = readFileSync(file, 'utf8').trim();
  } catch (e) {
    if (e instanceof XenoError) throw e;
    throw new XenoError('CONFIG_INVALID', `cannot read relocation key file ${file}: ${(e as Error).message}`);
  }
  if (!/^[0-9a-fA-F]+$/.test(text) || text.length % 2 !== 0 || text.length < 32) {
    throw new XenoError('CONFIG_INVALID', `relocation key file ${file} must hold at least 32 hex digits (e.g. \`openssl rand -hex 32\`)`);
  }
  return Buffer.from(text, 'hex');
}

export function newNonce(): string {
  return randomBytes(32).toString('hex');
}

function hmac(key: Buffer, ...parts: string[]): string {
  return createHmac('sha256', key).update(`xeno-relocation/${PROTOCOL_VERSION}|${parts.join('|')}`).digest('hex');
}

/** What the target proves: it knows the key, answering the source's nonce. */
export function targetProof(key: Buffer, sourceNonce: string, targetNonce: string): string {
  return hmac(key, 'target', sourceNonce, targetNonce);
}

/** What the source proves; the order and label differ so no proof can be reflected back. */
export function sourceProof(key: Buffer, targetNonce: string, sourceNonce: string): string {
  return hmac(key, 'source', targetNonce, sourceNonce);
}

function derive(key: Buffer, sourceNonce: string, targetNonce: string, what: string): Buffer {
  const salt = Buffer.from(sourceNonce + targetNonce, 'hex');
  return Buffer.from(hkdfSync('sha256', key, salt, `xeno-relocation/${PROTOCOL_VERSION} ${what}`, 32));
}

/** The per-migration TLS-PSK key for QEMU's stream (hex). */
export function sessionTlsKey(key: Buffer, sourceNonce: string, targetNonce: string): string {
  return derive(key, sourceNonce, targetNonce, 'qemu-tls').toString('hex');
}

/** The control channel's keys, one per direction, as seen from `side`. */
export function controlKeys(key: Buffer, sourceNonce: string, targetNonce: string, side: 'source' | 'target'): { send: Buffer; recv: Buffer } {
  const s2t = derive(key, sourceNonce, targetNonce, 'control source-to-target');
  const t2s = derive(key, sourceNonce, targetNonce, 'control target-to-source');
  return side === 'source' ? { send: s2t, recv: t2s } : { send: t2s, recv: s2t };
}

/** The refusal both ends give for a protocol version they do not speak. */
export function versionMismatch(mine: number, theirs: unknown, peer: 'source' | 'target'): XenoError {
  return new XenoError('BAD_REQUEST', `relocation protocol mismatch: this host speaks version ${mine}, the ${peer} ${typeof theirs === 'number' ? `version ${theirs}` : 'an unknown version'}; upgrade xeno so both hosts run the same protocol`);
}

export function proofMatches(expected: string, got: unknown): boolean {
  if (typeof got !== 'string' || got.length !== expected.length) return false;
  return timingSafeEqual(Buffer.from(expected), Buffer.from(got));
}

/**
 * Writes DIR/keys.psk (`xeno:HEX`) and DIR/dh-params.pem for QEMU's tls-creds-psk object; returns DIR. Group-readable
 * (whatever the umask): in a run dir the group is the unprivileged QEMU user's (setgid dir).
 */
export function writePskDir(dir: string, hexKey: string): string {
  mkdirSync(dir, { recursive: true, mode: 0o750 });
  chmodSync(dir, 0o2750);
  const file = path.join(dir, 'keys.psk');
  writeFileSync(file, `${PSK_IDENTITY}:${hexKey}\n`, { mode: 0o640 });
  chmodSync(file, 0o640);
  // A fixed well-known group: QEMU would otherwise generate one per migration (tls-dh.ts).
  writeFileSync(path.join(dir, DH_PARAMS_FILE), dhParamsPem(), { mode: 0o640 });
  return dir;
}

// ---- the wire -----------------------------------------------------------------------------

/** An error code the other side sent, kept when it is one of ours. */
export function remoteCode(code: unknown): ErrorCode {
  return typeof code === 'string' && code in ERROR_CATALOGUE ? (code as ErrorCode) : 'HOST_ERROR';
}
