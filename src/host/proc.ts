/** Reading processes and threads from /proc: liveness, CPU time, last CPU, state. */
import { readFileSync } from 'node:fs';

const CLK_TCK = 100; // USER_HZ, fixed at 100 on Linux/x86

export interface ThreadStat {
  state: string;
  /** Seconds of user+system CPU. */
  cpuTime: number;
  /** Host CPU the thread last ran on. */
  processor: number;
}

/** Fields of /proc/.../stat after the `(comm)` field, which may itself contain spaces. */
function statFields(path: string): string[] | null {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return null;
  }
  const close = text.lastIndexOf(')');
  return close < 0 ? null : text.slice(close + 2).trim().split(/\s+/);
}

export function threadStat(pid: number, tid = pid): ThreadStat | null {
  const f = statFields(tid === pid ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`);
  if (!f) return null;
  // after comm: [0]=state ... [11]=utime [12]=stime ... [36]=processor
  return {
    state: f[0]!,
    cpuTime: (Number(f[11]) + Number(f[12])) / CLK_TCK,
    processor: Number(f[36]),
  };
}

/** Gone = no such process, or a zombie (dead, only waiting to be reaped: init may take seconds). */
export function processGone(pid: number): boolean {
  const s = threadStat(pid);
  return s === null || s.state === 'Z' || s.state === 'X';
}

export function processCmdline(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return [];
  }
}

/** Resolve once the process is gone (polled: an orphan's exit is not ours to wait for). */
export async function waitProcessGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!processGone(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
}
