/** What a test may ask the host about its own leftovers: processes, namespaces, cgroups (read only). */
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { detectCgroups, type CgroupLayout } from '../../src/host/cgroups.js';

const execFileP = promisify(execFile);

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Processes whose command line contains `needle` (to check nothing is left behind), this one excluded. */
export async function pgrep(needle: string): Promise<number[]> {
  return processesNaming(needle);
}

/** Pids (not this process) whose command line contains `needle`. */
export function processesNaming(needle: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    if (cmdlineOf(Number(entry)).includes(needle)) pids.push(Number(entry));
  }
  return pids;
}

export function cmdlineOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return '';
  }
}

export async function listNetns(): Promise<string[]> {
  const r = await run(['ip', 'netns', 'list']);
  return r.stdout.split('\n').map((l) => l.split(' ')[0]!).filter(Boolean);
}

export function cgroupLayout(): CgroupLayout | null {
  try {
    return detectCgroups();
  } catch {
    return null;
  }
}

export async function run(argv: string[]): Promise<RunResult> {
  return execFileP(argv[0]!, argv.slice(1), { encoding: 'utf8' }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code?: number; stdout?: string; stderr?: string }) => ({ code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }),
  );
}

