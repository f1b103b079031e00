/**
 * Memory sizes as xl/xm take them (`mem-set`, `memory = "1g"`): a number with an optional unit
 * b, k, m, g, t (case-insensitive; `kb`/`kib` spellings too). Plain numbers are MiB ("MB" in Xen's
 * documentation). The result is a whole number of MiB; anything else is rejected, not rounded.
 */

import { XenoError } from '../common/errors.js';

const UNIT_SHIFT: Record<string, bigint> = {
  b: 0n,
  k: 10n,
  m: 20n,
  g: 30n,
  t: 40n,
};

const SIZE_RE = /^(\d+)(?:\.(\d+))?\s*(?:([kmgt])(?:i?b)?|(b))?$/i;

function invalid(msg: string): XenoError {
  return new XenoError('CONFIG_INVALID', msg);
}

/** Parses a size into MiB: `512`, `512m`, `1g`, `1.5G`, `524288k`, `2t`, `1073741824b`. */
export function parseMemSize(s: string | number): number {
  if (typeof s === 'number') {
    if (!Number.isFinite(s)) throw invalid(`invalid memory size ${s}`);
    if (s < 0) throw invalid(`memory size ${s} must not be negative`);
    if (!Number.isInteger(s)) throw invalid(`memory size ${s} is not a whole number of MiB`);
    if (!Number.isSafeInteger(s)) throw invalid(`memory size ${s} is too large`);
    return s;
  }
  const text = s.trim();
  if (text.startsWith('-')) throw invalid(`memory size "${s}" must not be negative`);
  const m = SIZE_RE.exec(text);
  if (!m) {
    throw invalid(
      `invalid memory size "${s}" (expected a number with an optional unit b, k, m, g or t; plain numbers are MiB)`,
    );
  }
  const [, intPart, fracPart = '', unit, bytesUnit] = m;
  const shift = UNIT_SHIFT[(unit ?? bytesUnit ?? 'm').toLowerCase()]!;
  // Exact arithmetic: value = (int.frac) * 2^shift bytes; must be a multiple of 2^20.
  const scale = 10n ** BigInt(fracPart.length);
  const numerator = BigInt(intPart! + fracPart) << shift;
  const mib = 1n << 20n;
  if (numerator % (scale * mib) !== 0n) {
    throw invalid(`memory size "${s}" is not a whole number of MiB`);
  }
  const result = numerator / (scale * mib);
  if (result > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid(`memory size "${s}" is too large`);
  return Number(result);
}

/** Formats MiB the way `xl list` users read them back: `512m`, `2g` when exact. */
export function formatMemSize(mib: number): string {
  if (mib > 0 && mib % (1024 * 1024) === 0) return `${mib / (1024 * 1024)}t`;
  if (mib > 0 && mib % 1024 === 0) return `${mib / 1024}g`;
  return `${mib}m`;
}
