/**
 * A QEMU 7.2 trap under multi-threaded TCG: the translation buffer (`tb-size`) is cut into regions
 * (tcg/region.c: tb-size / 2 MiB of them, at most maxcpus × 8, at least maxcpus); each vcpu thread
 * takes the next free region when it fills its own, and they all come back only at a full flush,
 * which happens when a running vcpu finds none left. A vcpu thread that starts (a hot-plug) takes
 * its first region in tcg_region_initial_alloc__locked, which ASSERTS that one is free: plugged
 * while the buffer is in its last regions, QEMU aborts (SIGABRT) and the guest is lost. Seen with
 * a Debian guest at the default 64 MiB. So a guest that may hot-plug gets a bigger buffer (its
 * boot and services then stay far from the end: the buffer is virtual memory, used as code is
 * translated), and a plug is refused when `x-query-jit` says too few regions are left for it.
 */
import type { Vm } from '../backend.js';

/** The translation buffer (MiB) of a TCG guest that may hot-plug vcpus (maxvcpus > 1). */
export const HOTPLUG_TB_MB = 256;

const MIB = 1024 * 1024;

/** tcg_n_regions() of QEMU 7.2 (tcg/region.c) for a buffer of tbBytes and maxcpus vcpus. */
export function tcgRegionCount(tbBytes: number, maxCpus: number): number {
  if (maxCpus <= 1) return 1;
  const n = Math.floor(tbBytes / (2 * MIB));
  if (n <= maxCpus) return maxCpus;
  return Math.min(n, maxCpus * 8);
}

/**
 * Regions surely still free: the buffer's used bytes count every region handed out and left full,
 * plus the one each vcpu thread writes into now (counted as whole, the safe side).
 */
export function tcgFreeRegions(s: { usedBytes: number; capacityBytes: number; maxCpus: number; threads: number }): number {
  const n = tcgRegionCount(s.capacityBytes, s.maxCpus);
  const regionBytes = s.capacityBytes / n;
  const full = Math.ceil(s.usedBytes / regionBytes);
  return Math.max(0, n - full - s.threads);
}

/** "gen code size USED/CAPACITY" of QEMU's JIT report (x-query-jit, `info jit`). */
export function parseJitSizes(text: string): { usedBytes: number; capacityBytes: number } | undefined {
  const m = /gen code size\s+(\d+)\/(\d+)/.exec(text);
  return m ? { usedBytes: Number(m[1]), capacityBytes: Number(m[2]) } : undefined;
}

/** The buffer as QEMU reports it now (undefined if this QEMU does not say). */
export async function queryJit(vm: Vm): Promise<{ usedBytes: number; capacityBytes: number } | undefined> {
  const r = await vm.command<{ 'human-readable-text'?: string }>('x-query-jit').catch(() => undefined);
  return r?.['human-readable-text'] ? parseJitSizes(r['human-readable-text']) : undefined;
}
