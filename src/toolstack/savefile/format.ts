/**
 * The xeno save file format (docs/save-format.md), version 1. Pure: encoding and decoding of the
 * header and the trailer; the writer and the reader do the I/O.
 *
 *   offset 0   8 bytes   magic "XENOSAVE"
 *          8   u32 LE    format version (1)
 *         12   u32 LE    J = length of the JSON block in bytes
 *         16   J bytes   JSON (UTF-8): SaveHeader
 *       16+J   32 bytes  SHA-256 of bytes [0, 16+J): the header checks itself before anything is created
 *       48+J   P bytes   the QEMU migration stream, as QEMU wrote it
 *     48+J+P   8 bytes   magic "XENOEND!"
 *              u64 LE    P (payload length)
 *              32 bytes  SHA-256 of every byte before the trailer (header, header hash, payload)
 */
import { createHash } from 'node:crypto';
import { XenoError } from '../../common/errors.js';
import { validateDomainConfig } from '../../config/validate.js';
import type { DomainConfig } from '../../model/domain-config.js';

export const SAVE_MAGIC = Buffer.from('XENOSAVE', 'latin1');
export const TRAILER_MAGIC = Buffer.from('XENOEND!', 'latin1');
export const SAVE_FORMAT_VERSION = 1;
/** Bytes before the JSON block: magic, version, JSON length. */
export const HEADER_PREFIX_LEN = 16;
export const HASH_LEN = 32;
export const TRAILER_LEN = 8 + 8 + HASH_LEN;
/** A header is a config and a few figures: anything larger is not a save file. */
export const MAX_HEADER_JSON = 1024 * 1024;

export interface SaveHeader {
  /** xeno's version that wrote the file. */
  xenoVersion: string;
  /** The domain's config at save time (name, disks, memory...): restore recreates exactly this. */
  config: DomainConfig;
  name: string;
  uuid?: string;
  /** The versioned machine type the migration stream belongs to (e.g. pc-i440fx-7.2). */
  machineType: string;
  /** The QEMU version that wrote the stream; restore needs this version or newer. */
  qemuVersion: string;
  accel?: string;
  /** The guest's state when saved: restore leaves a paused guest paused. */
  state: 'running' | 'paused';
  /** MiB: the balloon target and the guest's RAM size (QEMU's -m). */
  memoryMb: number;
  maxmemMb: number;
  /** ISO-8601 time the save started. */
  created: string;
}

/** What a reader learns from a file before touching its payload. */
export interface SaveFileInfo {
  path: string;
  formatVersion: number;
  header: SaveHeader;
  /** The header bytes (prefix, JSON, header hash) exactly as stored: the whole-file hash starts with them. */
  headerRaw: Buffer;
  payloadOffset: number;
  payloadLength: number;
  fileSize: number;
  /** The SHA-256 recorded in the trailer (hex); trusted only once the stream has been hashed. */
  trailerSha256: string;
}

/** Progress of a save or restore: `done` of `total` drives a bar, `bytes` is the file's payload so far. */
export interface SaveProgress {
  bytes: number;
  done: number;
  total: number;
}

export type ProgressFn = (p: SaveProgress) => void;

function formatError(message: string, details?: Record<string, unknown>): XenoError {
  return new XenoError('SAVE_FORMAT', message, details);
}

export function encodeHeader(h: SaveHeader): Buffer {
  const json = Buffer.from(JSON.stringify(h), 'utf8');
  if (json.length > MAX_HEADER_JSON) throw new XenoError('INTERNAL', `save header too large (${json.length} bytes)`);
  const prefix = Buffer.alloc(HEADER_PREFIX_LEN);
  SAVE_MAGIC.copy(prefix, 0);
  prefix.writeUInt32LE(SAVE_FORMAT_VERSION, 8);
  prefix.writeUInt32LE(json.length, 12);
  const body = Buffer.concat([prefix, json]);
  return Buffer.concat([body, createHash('sha256').update(body).digest()]);
}

/**
 * How many header bytes are needed in total, from the first 16 (throws on bad magic or version).
 * `fileSize`, when given, turns "not enough bytes" into a truncation error naming the sizes.
 */
export function headerLength(prefix: Buffer, file = 'save file', fileSize?: number): number {
  if (prefix.length < HEADER_PREFIX_LEN) {
    if (prefix.length >= 8 && !prefix.subarray(0, 8).equals(SAVE_MAGIC)) throw badMagic(file);
    throw formatError(`${file} is truncated: ${prefix.length} bytes, shorter than a save file header`);
  }
  if (!prefix.subarray(0, 8).equals(SAVE_MAGIC)) throw badMagic(file);
  const version = prefix.readUInt32LE(8);
  if (version !== SAVE_FORMAT_VERSION) {
    throw formatError(
      `${file} is in save format version ${version}; this xeno reads version ${SAVE_FORMAT_VERSION} only`,
      { formatVersion: version, supported: [SAVE_FORMAT_VERSION] },
    );
  }
  const jsonLen = prefix.readUInt32LE(12);
  if (jsonLen === 0 || jsonLen > MAX_HEADER_JSON) throw formatError(`${file} has a corrupted header (JSON length ${jsonLen})`);
  const total = HEADER_PREFIX_LEN + jsonLen + HASH_LEN;
  if (fileSize !== undefined && fileSize < total) {
    throw formatError(`${file} is truncated: ${fileSize} bytes, its header alone takes ${total}`);
  }
  return total;
}

function badMagic(file: string): XenoError {
  return formatError(`${file} is not a xeno save file (no XENOSAVE magic at the start)`);
}

/** Decode and check a complete header (prefix + JSON + hash). */
export function decodeHeader(raw: Buffer, file = 'save file'): { header: SaveHeader; formatVersion: number; length: number } {
  const length = headerLength(raw.subarray(0, HEADER_PREFIX_LEN), file);
  if (raw.length < length) throw formatError(`${file} is truncated inside its header (${raw.length} of ${length} bytes)`);
  const body = raw.subarray(0, length - HASH_LEN);
  const stored = raw.subarray(length - HASH_LEN, length);
  if (!createHash('sha256').update(body).digest().equals(stored)) {
    throw formatError(`${file} is corrupted: its header checksum does not match`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.subarray(HEADER_PREFIX_LEN).toString('utf8'));
  } catch (e) {
    throw formatError(`${file} has an unreadable header: ${(e as Error).message}`);
  }
  return { header: checkHeader(parsed, file), formatVersion: raw.readUInt32LE(8), length };
}

function checkHeader(v: unknown, file: string): SaveHeader {
  const bad = (what: string) => formatError(`${file} has an invalid header: ${what}`);
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad('not an object');
  const h = v as Record<string, unknown>;
  for (const k of ['xenoVersion', 'name', 'machineType', 'qemuVersion', 'created'] as const) {
    if (typeof h[k] !== 'string') throw bad(`${k} missing`);
  }
  if (h.state !== 'running' && h.state !== 'paused') throw bad('state must be running or paused');
  for (const k of ['memoryMb', 'maxmemMb'] as const) {
    if (typeof h[k] !== 'number' || !Number.isFinite(h[k]) || (h[k] as number) <= 0) throw bad(`${k} missing`);
  }
  for (const k of ['uuid', 'accel'] as const) {
    if (h[k] !== undefined && typeof h[k] !== 'string') throw bad(`${k} must be a string`);
  }
  if (h.config === undefined) throw bad('config missing');
  let config: DomainConfig;
  try {
    // The whole shape, by the one validator; the floor and xenod's own files are checked by restore.
    config = validateDomainConfig(h.config, { minGuestMem: 0 });
  } catch (e) {
    throw bad(`config: ${(e as Error).message}`);
  }
  // Unknown keys are ignored (docs/save-format.md): dropped here, so nothing reads them by accident.
  const out: SaveHeader = {
    xenoVersion: h.xenoVersion as string, config, name: h.name as string, machineType: h.machineType as string,
    qemuVersion: h.qemuVersion as string, state: h.state, memoryMb: h.memoryMb as number, maxmemMb: h.maxmemMb as number,
    created: h.created as string,
  };
  if (h.uuid !== undefined) out.uuid = h.uuid as string;
  if (h.accel !== undefined) out.accel = h.accel as string;
  return out;
}

export function encodeTrailer(payloadLength: number, sha256: Buffer): Buffer {
  const t = Buffer.alloc(TRAILER_LEN);
  TRAILER_MAGIC.copy(t, 0);
  t.writeBigUInt64LE(BigInt(payloadLength), 8);
  sha256.copy(t, 16);
  return t;
}

export function decodeTrailer(t: Buffer, file = 'save file'): { payloadLength: number; sha256: Buffer } {
  if (t.length !== TRAILER_LEN || !t.subarray(0, 8).equals(TRAILER_MAGIC)) {
    throw formatError(`${file} is truncated or corrupted: no XENOEND! trailer at its end (an interrupted save?)`);
  }
  const len = t.readBigUInt64LE(8);
  if (len > BigInt(Number.MAX_SAFE_INTEGER)) throw formatError(`${file} has a corrupted trailer (payload length ${len})`);
  return { payloadLength: Number(len), sha256: Buffer.from(t.subarray(16, 16 + HASH_LEN)) };
}

/**
 * Compare two QEMU versions ("7.2.22", "8.0.0"): negative when a < b. Trailing distro suffixes
 * ("7.2+dfsg") are ignored.
 */
export function compareQemuVersions(a: string, b: string): number {
  const parts = (v: string) => {
    const m = /^(\d+)(?:\.(\d+))?(?:\.(\d+))?/.exec(v.trim());
    return m ? [m[1], m[2], m[3]].map((x) => Number(x ?? 0)) : [0, 0, 0];
  };
  const pa = parts(a);
  const pb = parts(b);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}
