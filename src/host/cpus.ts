/** Host CPUs and thread affinity (sched_setaffinity through util-linux's taskset). */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { XenoError } from '../common/errors.js';
import { formatCpuList, parseCpuList } from '../config/cpu-list.js';

/** The number of CPUs the host has online (CPU numbers 0..n-1). */
export function hostCpuCount(): number {
  try {
    const online = readFileSync('/sys/devices/system/cpu/online', 'utf8').trim();
    const cpus = parseCpuList(online);
    return cpus[cpus.length - 1]! + 1;
  } catch {
    return Math.max(1, os.cpus().length);
  }
}

function checkTid(tid: number): void {
  if (!Number.isInteger(tid) || tid <= 0) throw new XenoError('BAD_REQUEST', `invalid thread id ${tid}`);
}

/** Pins one thread (a vcpu thread of QEMU) to the given host CPUs. */
export async function setThreadAffinity(tid: number, cpus: number[]): Promise<void> {
  checkTid(tid);
  if (cpus.length === 0 || cpus.some((c) => !Number.isInteger(c) || c < 0)) {
    throw new XenoError('BAD_REQUEST', `invalid CPU set [${cpus.join(',')}] for thread ${tid}`);
  }
  const list = formatCpuList(cpus, 0);
  await new Promise<void>((resolve, reject) => {
    execFile('taskset', ['-p', '-c', list, String(tid)], { timeout: 10_000 }, (err, _stdout, stderr) => {
      if (err) {
        const why = String(stderr).trim() || err.message;
        reject(new XenoError('HOST_ERROR', `cannot set the CPU affinity of thread ${tid} to ${list}: ${why}`));
      } else resolve();
    });
  });
}

/** The CPUs a thread may run on, from /proc/<tid>/status (any thread id works there). */
export function getThreadAffinity(tid: number): number[] {
  checkTid(tid);
  let text: string;
  try {
    text = readFileSync(`/proc/${tid}/status`, 'utf8');
  } catch {
    throw new XenoError('HOST_ERROR', `thread ${tid} does not exist`);
  }
  const m = /^Cpus_allowed_list:\s*(\S+)/m.exec(text);
  if (!m) throw new XenoError('HOST_ERROR', `no Cpus_allowed_list in /proc/${tid}/status`);
  return parseCpuList(m[1]!);
}
