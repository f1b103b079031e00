/**
 * Host memory accounting, as xend did it: the host's total, a reservation for Domain-0, and each
 * guest charged its maxmem plus QEMU's own overhead, so the host is never over-committed.
 */
import { readFileSync } from 'node:fs';
import { XenoError } from '../common/errors.js';

/** MemTotal changes only with memory hot-plug: read again after this long (a list of 100 guests and every create ask). */
const TOTAL_TTL_MS = 1000;
let total: { mb: number; at: number } | undefined;

export function hostTotalMemoryMb(): number {
  const now = performance.now();
  if (total && now - total.at < TOTAL_TTL_MS) return total.mb;
  const text = readFileSync('/proc/meminfo', 'utf8');
  const m = /^MemTotal:\s+(\d+) kB/m.exec(text);
  if (!m) throw new XenoError('HOST_ERROR', 'cannot read MemTotal from /proc/meminfo');
  total = { mb: Math.floor(Number(m[1]) / 1024), at: now };
  return total.mb;
}

export interface MemoryCharge {
  name: string;
  /** MiB charged to the host for this guest. */
  mb: number;
}

export interface MemoryAccount {
  total: number;
  dom0MinMem: number;
  /** Sum of the guests' charges. */
  guests: number;
  /** What a new guest may still take. */
  free: number;
  /** What the guests leave to Domain-0. */
  dom0: number;
}

export function account(total: number, dom0MinMem: number, charges: MemoryCharge[]): MemoryAccount {
  const guests = charges.reduce((s, c) => s + c.mb, 0);
  return { total, dom0MinMem, guests, free: Math.max(0, total - dom0MinMem - guests), dom0: total - guests };
}

/** Refuse, with the figures, a request that would over-commit the host. */
export function ensureFits(acc: MemoryAccount, wantMb: number, what: string): void {
  if (wantMb > acc.free) {
    throw new XenoError(
      'NO_MEMORY',
      `not enough free host memory to ${what}: needs ${wantMb} MiB, ${acc.free} MiB free ` +
        `(total ${acc.total} MiB, ${acc.guests} MiB held by guests, ${acc.dom0MinMem} MiB reserved for Domain-0 by dom0-min-mem)`,
    );
  }
}
