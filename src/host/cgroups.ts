/**
 * One CPU control group per domain: the credit scheduler's knobs (weight, cap) made real.
 *
 * cgroup v2 (the unified hierarchy, `cpu.weight` / `cpu.max`) where the host has the cpu controller
 * there, cgroup v1 otherwise (`cpu.shares` / `cpu.cfs_quota_us`, on whichever hierarchy carries the
 * `cpu` controller: `cpu` alone, or `cpu,cpuacct` combined; read from the mount table, never guessed).
 * Groups live under `<cpu-mount>/xeno-<instance>/<domain>`, the instance being derived from the
 * daemon's state directory so that two xenods on one machine never share a group.
 *
 * Xen's weight maps linearly: 256 (Xen's default) = v1 `cpu.shares` 1024 = v2 `cpu.weight` 100.
 * A cap is in percent of one CPU: 50 = 50 ms of CPU per 100 ms period; 0 = no cap.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { XenoError, errorMessage } from '../common/errors.js';

export type CgroupVersion = 1 | 2;

export interface CgroupLayout {
  version: CgroupVersion;
  /** Mount point of the hierarchy carrying the cpu controller (v2: the unified mount). */
  cpuMount: string;
  /** v1 only: every controller bound to that hierarchy (e.g. ['cpu'] or ['cpu', 'cpuacct']). */
  controllers: string[];
}

export const CFS_PERIOD_US = 100_000;
export const DEFAULT_WEIGHT = 256;
export const MAX_WEIGHT = 65535;

interface MountEntry {
  mountPoint: string;
  fsType: string;
  superOptions: string[];
}

/** mountinfo/mounts escape space, tab, newline and backslash as `\ooo`. */
function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Parses /proc/self/mountinfo or /proc/mounts text (the format is recognised per line). */
export function parseMounts(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 3) continue;
    const sep = fields.indexOf('-');
    if (sep >= 6 && fields.length >= sep + 3) {
      // mountinfo: id parent maj:min root mountpoint options [optional...] - fstype source superoptions
      out.push({
        mountPoint: unescapeMount(fields[4]!),
        fsType: fields[sep + 1]!,
        superOptions: (fields[sep + 3] ?? '').split(','),
      });
    } else if (fields.length >= 4) {
      // /proc/mounts: source mountpoint fstype options dump pass
      out.push({ mountPoint: unescapeMount(fields[1]!), fsType: fields[2]!, superOptions: fields[3]!.split(',') });
    }
  }
  return out;
}

function readMountTable(): string {
  for (const f of ['/proc/self/mountinfo', '/proc/mounts']) {
    try {
      return readFileSync(f, 'utf8');
    } catch {
      /* try the next one */
    }
  }
  throw new XenoError('HOST_ERROR', 'cannot read the mount table (/proc/self/mountinfo, /proc/mounts)');
}

/**
 * Finds where the cpu controller is: the unified (cgroup2) hierarchy when its cgroup.controllers
 * lists `cpu`, else the cgroup v1 hierarchy whose mount options name `cpu`. `root` prefixes the
 * mount points when files are read (for a tree that is not at `/`).
 */
export function detectCgroups(mountsText: string = readMountTable(), root = '/'): CgroupLayout {
  const mounts = parseMounts(mountsText);
  const at = (m: MountEntry) => path.join(root, m.mountPoint);
  const v2 = mounts.filter((m) => m.fsType === 'cgroup2');
  // Prefer the conventional /sys/fs/cgroup when several unified mounts exist.
  v2.sort((a, b) => Number(b.mountPoint === '/sys/fs/cgroup') - Number(a.mountPoint === '/sys/fs/cgroup'));
  for (const m of v2) {
    let controllers: string[] = [];
    try {
      controllers = readFileSync(path.join(at(m), 'cgroup.controllers'), 'utf8').trim().split(/\s+/);
    } catch {
      continue;
    }
    if (controllers.includes('cpu')) return { version: 2, cpuMount: at(m), controllers };
  }
  const v1 = mounts.find((m) => m.fsType === 'cgroup' && m.superOptions.includes('cpu'));
  if (v1) {
    const known = new Set(['cpu', 'cpuacct', 'cpuset', 'memory', 'devices', 'freezer', 'net_cls', 'net_prio', 'blkio', 'perf_event', 'hugetlb', 'pids', 'rdma', 'misc']);
    return { version: 1, cpuMount: at(v1), controllers: v1.superOptions.filter((o) => known.has(o)) };
  }
  throw new XenoError(
    'HOST_ERROR',
    'no cgroup hierarchy with the cpu controller is mounted (neither cgroup2 with "cpu" in cgroup.controllers nor a cgroup v1 "cpu" hierarchy)',
  );
}

/** A short, stable, path-safe name for one xenod instance, from e.g. its state directory. */
export function cgroupInstanceName(seed: string): string {
  return createHash('sha256').update(path.resolve(seed)).digest('hex').slice(0, 10);
}

// ---- the linear mappings (pure) ----------------------------------------------------------------

function checkWeight(weight: number): void {
  if (!Number.isInteger(weight) || weight < 1 || weight > MAX_WEIGHT) {
    throw new XenoError('BAD_REQUEST', `invalid weight ${weight}: expected a whole number from 1 to ${MAX_WEIGHT} (default ${DEFAULT_WEIGHT})`);
  }
}

function checkCap(cap: number): void {
  if (!Number.isInteger(cap) || cap < 0 || cap > 100 * 4096) {
    throw new XenoError('BAD_REQUEST', `invalid cap ${cap}: expected a whole percentage of one CPU (0 = no cap, 100 = one CPU, 200 = two)`);
  }
}

/** Xen weight -> cgroup v1 cpu.shares (256 -> 1024; the kernel's minimum is 2). */
export function weightToShares(weight: number): number {
  checkWeight(weight);
  return Math.max(2, weight * 4);
}

/** Xen weight -> cgroup v2 cpu.weight (256 -> 100, within 1..10000). */
export function weightToV2(weight: number): number {
  checkWeight(weight);
  return Math.min(10000, Math.max(1, Math.round((weight * 100) / 256)));
}

export function sharesToWeight(shares: number): number {
  return Math.min(MAX_WEIGHT, Math.max(1, Math.round(shares / 4)));
}

export function v2ToWeight(w: number): number {
  return Math.min(MAX_WEIGHT, Math.max(1, Math.round((w * 256) / 100)));
}

/** Cap (% of one CPU, 0 = none) -> CFS quota in µs per CFS_PERIOD_US, -1 = unlimited. */
export function capToQuota(cap: number): number {
  checkCap(cap);
  return cap === 0 ? -1 : cap * (CFS_PERIOD_US / 100);
}

/** Cap -> cgroup v2 cpu.max text. */
export function capToCpuMax(cap: number): string {
  const q = capToQuota(cap);
  return `${q < 0 ? 'max' : q} ${CFS_PERIOD_US}`;
}

export function quotaToCap(quotaUs: number, periodUs: number): number {
  return quotaUs < 0 || periodUs <= 0 ? 0 : Math.round((quotaUs * 100) / periodUs);
}

export interface CgroupSettings {
  weight: number;
  cap: number;
}

// ---- the groups --------------------------------------------------------------------------------

const GROUP_NAME_RE = /^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$/;

function hostError(what: string, e: unknown): XenoError {
  return new XenoError('HOST_ERROR', `cgroup: ${what}: ${errorMessage(e)}`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export class DomainCgroups {
  /** `<cpu-mount>/xeno-<instance>`: this daemon's parent group. */
  readonly base: string;

  constructor(
    readonly layout: CgroupLayout,
    instanceName: string,
  ) {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(instanceName)) {
      throw new XenoError('INTERNAL', `invalid cgroup instance name '${instanceName}'`);
    }
    this.base = path.join(layout.cpuMount, `xeno-${instanceName}`);
  }

  get version(): CgroupVersion {
    return this.layout.version;
  }

  /** The group's directory for a domain (nothing is created). */
  pathOf(domName: string): string {
    if (!GROUP_NAME_RE.test(domName)) {
      throw new XenoError('BAD_REQUEST', `cannot make a cgroup for '${domName}': not a safe directory name`);
    }
    return path.join(this.base, domName);
  }

  exists(domName: string): boolean {
    return existsSync(this.pathOf(domName));
  }

  private write(dir: string, file: string, value: string): void {
    try {
      writeFileSync(path.join(dir, file), value);
    } catch (e) {
      throw hostError(`writing "${value}" to ${path.join(dir, file)}`, e);
    }
  }

  private read(dir: string, file: string): string {
    try {
      return readFileSync(path.join(dir, file), 'utf8').trim();
    } catch (e) {
      throw hostError(`reading ${path.join(dir, file)}`, e);
    }
  }

  /** v2: a group can only give its children the cpu controller if it has it in subtree_control. */
  private enableCpuIn(dir: string): void {
    let current = '';
    try {
      current = readFileSync(path.join(dir, 'cgroup.subtree_control'), 'utf8');
    } catch {
      /* a fresh fake tree: write it */
    }
    if (!current.split(/\s+/).includes('cpu')) this.write(dir, 'cgroup.subtree_control', '+cpu');
  }

  /** Makes (or finds) the domain's group; returns its path. */
  create(domName: string): string {
    const dir = this.pathOf(domName);
    try {
      if (this.layout.version === 2) {
        this.enableCpuIn(this.layout.cpuMount);
        mkdirSync(this.base, { recursive: true });
        this.enableCpuIn(this.base);
      } else {
        mkdirSync(this.base, { recursive: true });
      }
      mkdirSync(dir, { recursive: true });
    } catch (e) {
      if (e instanceof XenoError) throw e;
      throw hostError(`creating ${dir}`, e);
    }
    return dir;
  }

  /**
   * Moves a whole process (every thread of it) into the domain's group. Not a synchronous write:
   * moving a task between cgroups can wait for an RCU grace period (1-12 ms measured), which would
   * stall xenod's one thread once per guest when ten are created at once.
   */
  async addPid(domName: string, pid: number): Promise<void> {
    const file = path.join(this.pathOf(domName), 'cgroup.procs');
    try {
      await writeFile(file, String(pid));
    } catch (e) {
      throw hostError(`writing "${pid}" to ${file}`, e);
    }
  }

  /**
   * Moves threads: v1 moves each thread id through `tasks`; v2 places processes only (threads
   * follow their process), so the owning process of each thread is moved.
   */
  addThreads(domName: string, tids: number[]): void {
    const dir = this.pathOf(domName);
    if (this.layout.version === 1) {
      for (const tid of tids) this.write(dir, 'tasks', String(tid));
      return;
    }
    const pids = new Set(tids.map((t) => tgidOf(t) ?? t));
    for (const pid of pids) this.write(dir, 'cgroup.procs', String(pid));
  }

  setWeight(domName: string, weight: number): void {
    const dir = this.pathOf(domName);
    if (this.layout.version === 1) this.write(dir, 'cpu.shares', String(weightToShares(weight)));
    else this.write(dir, 'cpu.weight', String(weightToV2(weight)));
  }

  setCap(domName: string, cap: number): void {
    const dir = this.pathOf(domName);
    if (this.layout.version === 1) {
      const quota = capToQuota(cap);
      // The period first (the quota is validated against it), then the quota.
      this.write(dir, 'cpu.cfs_period_us', String(CFS_PERIOD_US));
      this.write(dir, 'cpu.cfs_quota_us', String(quota));
    } else {
      this.write(dir, 'cpu.max', capToCpuMax(cap));
    }
  }

  /** What the group's files say now, in Xen's units. */
  settings(domName: string): CgroupSettings {
    const dir = this.pathOf(domName);
    if (this.layout.version === 1) {
      return {
        weight: sharesToWeight(Number(this.read(dir, 'cpu.shares'))),
        cap: quotaToCap(Number(this.read(dir, 'cpu.cfs_quota_us')), Number(this.read(dir, 'cpu.cfs_period_us'))),
      };
    }
    const [quota, period] = this.read(dir, 'cpu.max').split(/\s+/);
    return {
      weight: v2ToWeight(Number(this.read(dir, 'cpu.weight'))),
      cap: quota === 'max' ? 0 : quotaToCap(Number(quota), Number(period)),
    };
  }

  /** Process ids in the group. */
  pids(domName: string): number[] {
    const dir = this.pathOf(domName);
    if (!existsSync(dir)) return [];
    return this.read(dir, 'cgroup.procs').split(/\s+/).filter(Boolean).map(Number);
  }

  /**
   * Removes the domain's group. Processes still in it (QEMU normally has exited by now) are moved
   * back to the hierarchy's root group first; a process that has just exited may linger for a
   * moment, so busy groups are retried. Missing groups are fine.
   */
  async remove(domName: string, attempts = 50): Promise<void> {
    const dir = this.pathOf(domName);
    let last: unknown;
    for (let i = 0; i < attempts; i++) {
      if (!existsSync(dir)) return;
      try {
        rmdirSync(dir);
        this.removeBase(); // the last domain gone: no empty xeno-<instance> left behind
        return;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') return;
        last = e;
        if (code !== 'EBUSY' && code !== 'ENOTEMPTY') break;
      }
      for (const pid of this.pidsQuiet(dir)) {
        try {
          writeFileSync(path.join(this.layout.cpuMount, 'cgroup.procs'), String(pid));
        } catch {
          /* gone meanwhile */
        }
      }
      await sleep(Math.min(20 * (i + 1), 200));
    }
    throw hostError(`removing ${dir}`, last);
  }

  private pidsQuiet(dir: string): number[] {
    try {
      return readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split(/\s+/).filter(Boolean).map(Number);
    } catch {
      return [];
    }
  }

  /**
   * Removes every domain group of this instance and the instance's parent group (tasks still in
   * them are moved to the root group first). For test cleanup after a daemon was killed.
   */
  async removeAll(): Promise<void> {
    let names: string[] = [];
    try {
      names = readdirSync(this.base, { withFileTypes: true })
        .filter((e) => e.isDirectory())
        .map((e) => e.name);
    } catch {
      return;
    }
    for (const n of names) {
      if (GROUP_NAME_RE.test(n)) await this.remove(n).catch(() => undefined);
    }
    this.removeBase();
  }

  /** Removes the instance's parent group when no domain group is left in it (silently kept otherwise). */
  removeBase(): void {
    try {
      rmdirSync(this.base);
    } catch {
      /* busy or gone */
    }
  }
}

/** The thread group (process) a thread id belongs to. */
function tgidOf(tid: number): number | null {
  try {
    const m = /^Tgid:\s+(\d+)/m.exec(readFileSync(`/proc/${tid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/**
 * The group a process is in within the cpu hierarchy, as an absolute path under the mount, read
 * from /proc/<pid>/cgroup (v1: the line naming `cpu`; v2: the `0::` line).
 */
export function cgroupOfPid(layout: CgroupLayout, pid: number | string): string | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
  } catch {
    return null;
  }
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    const ctrls = m[2]!.split(',');
    if ((layout.version === 2 && m[1] === '0' && m[2] === '') || (layout.version === 1 && ctrls.includes('cpu'))) {
      return m[3] === '/' ? layout.cpuMount : path.join(layout.cpuMount, m[3]!);
    }
  }
  return null;
}
