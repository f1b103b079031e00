/**
 * `xm vcpu-list`: one row per vcpu, read from the real QEMU vcpu threads (their ids come from QMP
 * query-cpus-fast; the host CPU, state, CPU time and affinity from /proc).
 */
import { formatCpuList } from '../config/cpu-list.js';
import { getThreadAffinity } from './cpus.js';
import { threadStat } from './proc.js';

export interface VcpuRow {
  name: string;
  id: number;
  vcpu: number;
  /** Host CPU the vcpu thread last ran on; null when the vcpu is offline (shown `-`). */
  cpu: number | null;
  /** `r--` running, `-b-` blocked, `--p` paused (or offline). */
  state: string;
  /** Seconds of host CPU the vcpu thread has used. */
  time: number;
  /** `any cpu` or a list like `0-1`. */
  affinity: string;
  /** The affinity as CPU numbers. */
  cpus: number[];
  /** The QEMU thread behind the vcpu (absent when offline). */
  threadId?: number;
}

export interface VcpuRowOptions {
  /** The domain is paused: every vcpu shows `--p`. */
  paused?: boolean;
  /**
   * Vcpu indexes the domain should have (e.g. 0..maxvcpus-1 or the ones being unplugged): those
   * without a thread are listed offline, `-` / `--p`.
   */
  expected?: number[];
}

export function vcpuRows(
  name: string,
  domid: number,
  pid: number,
  threads: Array<{ index: number; threadId: number }>,
  nrCpus: number,
  opts: VcpuRowOptions = {},
): VcpuRow[] {
  const rows: VcpuRow[] = [];
  const seen = new Set<number>();
  for (const t of [...threads].sort((a, b) => a.index - b.index)) {
    seen.add(t.index);
    const st = threadStat(pid, t.threadId);
    let cpus: number[];
    try {
      cpus = getThreadAffinity(t.threadId);
    } catch {
      cpus = [];
    }
    const all = Array.from({ length: nrCpus }, (_, i) => i);
    rows.push({
      name,
      id: domid,
      vcpu: t.index,
      cpu: st ? st.processor : null,
      state: !st ? '--p' : opts.paused ? '--p' : st.state === 'R' ? 'r--' : '-b-',
      time: st ? st.cpuTime : 0,
      affinity: formatCpuList(cpus.length ? cpus : all, nrCpus),
      cpus: cpus.length ? cpus : all,
      threadId: t.threadId,
    });
  }
  for (const index of opts.expected ?? []) {
    if (seen.has(index)) continue;
    const all = Array.from({ length: nrCpus }, (_, i) => i);
    rows.push({ name, id: domid, vcpu: index, cpu: null, state: '--p', time: 0, affinity: formatCpuList(all, nrCpus), cpus: all });
  }
  return rows.sort((a, b) => a.id - b.id || a.vcpu - b.vcpu);
}

export const VCPU_LIST_HEADER =
  `${'Name'.padEnd(32)} ${'ID'.padStart(5)} ${'VCPU'.padStart(5)} ${'CPU'.padStart(5)} ${'State'.padStart(5)} ${'Time(s)'.padStart(9)} CPU Affinity`;

/** One row as xm prints it (`%-32s %5s %5d %5s %5s  %8.1f %s`). */
export function formatVcpuRow(r: Pick<VcpuRow, 'name' | 'id' | 'vcpu' | 'cpu' | 'state' | 'time' | 'affinity'>): string {
  return (
    `${r.name.padEnd(32)} ${String(r.id).padStart(5)} ${String(r.vcpu).padStart(5)} ` +
    `${(r.cpu === null ? '-' : String(r.cpu)).padStart(5)} ${r.state.padStart(5)}  ${r.time.toFixed(1).padStart(8)} ${r.affinity}`
  );
}

/** The whole `xm vcpu-list` table, header first, one line per vcpu, ending with a newline. */
export function formatVcpuList(rows: Array<Pick<VcpuRow, 'name' | 'id' | 'vcpu' | 'cpu' | 'state' | 'time' | 'affinity'>>): string {
  return [VCPU_LIST_HEADER, ...rows.map(formatVcpuRow)].join('\n') + '\n';
}
