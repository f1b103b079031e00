/**
 * The QEMU backend: launches one QEMU per domain, detached into its own session so that the
 * daemon's death (even kill -9) never takes the guests with it, and re-adopts them by pid + QMP.
 */
import { execFile, spawn } from 'node:child_process';
import { chmodSync, chownSync, closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { XenoError } from '../../common/errors.js';
import { processCmdline, processGone, waitProcessGone } from '../../host/proc.js';
import type { AccelChoice } from '../../model/daemon-config.js';
import type { FoundQemu, HostCaps, HypervisorBackend, LaunchRequest, Vm } from '../backend.js';
import { detectAccel } from './accel.js';
import { buildQemuArgv, type QemuPaths } from './argv.js';
import { hostDiskFacts } from './disk-probe.js';
import { QmpClient } from './qmp.js';
import { QemuVm } from './vm.js';
import { HOTPLUG_TB_MB } from './tcg-regions.js';

const execFileP = promisify(execFile);

/** Unix socket paths are limited to 107 bytes. */
const SUN_PATH_MAX = 107;

/**
 * The run dir is root's, group-owned by the QEMU user's group (setgid, 02750): QEMU can reach what
 * xenod puts there for it (the save socket, TLS-PSK keys) but create nothing, so a compromised QEMU
 * cannot plant a symlink where xenod writes as root. What QEMU creates goes in RUNDIR/qemu, its own.
 */
export function qemuPaths(runDir: string): QemuPaths {
  // A QEMU an older xenod started (as root) has its sockets in the run dir itself: still adoptable.
  const legacy = existsSync(path.join(runDir, 'qmp.sock')) && !existsSync(path.join(runDir, 'qemu'));
  const dir = legacy ? runDir : path.join(runDir, 'qemu');
  return {
    dir,
    qmp: path.join(dir, 'qmp.sock'),
    serial: path.join(dir, 'serial.sock'),
    hvc: path.join(dir, 'hvc0.sock'),
    pidfile: path.join(dir, 'qemu.pid'),
    restore: path.join(dir, 'restore.sock'),
    qga: path.join(dir, 'qga.sock'),
  };
}

/** The unprivileged identity QEMU runs as (see host/qemu-user.ts). */
export interface QemuRunAs {
  user: string;
  uid: number;
  gid: number;
}

/**
 * The argv prefix that starts QEMU as `who`: setpriv sets the uids and gids, the user's
 * supplementary groups (kvm), drops every capability and sets no_new_privs, then execs QEMU (same
 * pid). Node's own spawn uid/gid cannot keep supplementary groups (libuv clears them). QEMU's own
 * `-runas` is not used: it would parse the disk images and open the devices as root and only drop
 * afterwards, and it needs setuid calls that `-sandbox elevateprivileges=deny` forbids.
 */
export function runAsPrefix(who: QemuRunAs): string[] {
  return [
    'setpriv', `--reuid=${who.uid}`, `--regid=${who.gid}`, '--init-groups',
    '--inh-caps=-all', '--ambient-caps=-all', '--bounding-set=-all', '--no-new-privs', '--',
  ];
}

/** The run dir as described at qemuPaths, for `who`. */
function prepareRunDir(runDir: string, who: QemuRunAs | undefined): QemuPaths {
  const paths = qemuPaths(runDir);
  mkdirSync(paths.dir, { recursive: true, mode: 0o700 });
  if (who) {
    chownSync(runDir, 0, who.gid);
    chmodSync(runDir, 0o2750);
    chownSync(paths.dir, who.uid, who.gid);
    chmodSync(paths.dir, 0o700);
  }
  return paths;
}

export async function qemuVersion(binary: string): Promise<string> {
  const { stdout } = await execFileP(binary, ['--version']);
  const m = /version\s+([0-9][^\s]*)/.exec(stdout);
  if (!m) throw new XenoError('QEMU_ERROR', `cannot read the version of ${binary}`);
  return m[1]!;
}

/** The versioned machine type `pc` stands for (e.g. pc-i440fx-7.2): saves and migrations pin it. */
export async function defaultMachineType(binary: string): Promise<string> {
  const { stdout } = await execFileP(binary, ['-machine', 'help']);
  const m = /^pc\s+.*\(alias of ([\w.-]+)\)/m.exec(stdout);
  if (!m) throw new XenoError('QEMU_ERROR', `cannot find the versioned machine type behind 'pc' in ${binary} -machine help`);
  return m[1]!;
}

export class QemuBackend implements HypervisorBackend {
  private constructor(
    readonly binary: string,
    readonly caps: HostCaps,
    private readonly tbSizeMb: number,
    /** Who QEMU runs as; absent = as xenod itself (root), for callers that never launch guests. */
    readonly runAs?: QemuRunAs,
  ) {}

  static async create(opts: { binary: string; accel: AccelChoice; cacheDir?: string; tbSizeMb?: number; runAs?: QemuRunAs }): Promise<QemuBackend> {
    try {
      const [version, machineType, decision] = await Promise.all([
        qemuVersion(opts.binary),
        defaultMachineType(opts.binary),
        detectAccel(opts.accel, opts.binary, opts.cacheDir),
      ]);
      return new QemuBackend(
        opts.binary,
        { accel: decision.accel, accelReason: decision.reason, qemuVersion: version, machineType },
        opts.tbSizeMb ?? 64,
        opts.runAs,
      );
    } catch (e) {
      if (e instanceof XenoError) throw e;
      throw new XenoError('QEMU_ERROR', `cannot run ${opts.binary} (install qemu-system-x86): ${(e as Error).message}`);
    }
  }

  /** The TCG translation buffer (MiB) of a guest: bigger where it may hot-plug vcpus (tcg-regions.ts). */
  tbSizeFor(c: { maxvcpus: number }): number {
    return c.maxvcpus > 1 ? Math.max(this.tbSizeMb, HOTPLUG_TB_MB) : this.tbSizeMb;
  }

  /** MiB QEMU itself needs beyond a guest's RAM: its TCG translation buffer plus a fixed allowance. */
  overheadMbFor(c: { maxvcpus: number }): number {
    return (this.caps.accel === 'tcg' ? this.tbSizeFor(c) : 0) + 48;
  }

  argv(req: LaunchRequest): string[] {
    return buildQemuArgv({
      domid: req.domid,
      config: req.config,
      uuid: req.uuid,
      machineType: req.machineType,
      accel: this.caps.accel,
      paths: qemuPaths(req.runDir),
      nics: req.nics,
      startPaused: req.startPaused,
      incoming: req.incoming,
      tlsPskDir: req.tlsPskDir,
      tbSizeMb: this.tbSizeFor(req.config),
      diskFacts: req.diskFacts ?? hostDiskFacts(req.config),
    });
  }

  async launch(req: LaunchRequest): Promise<Vm> {
    const paths = qemuPaths(req.runDir);
    for (const p of [paths.qmp, paths.serial, paths.hvc, paths.qga]) {
      if (Buffer.byteLength(p) > SUN_PATH_MAX) {
        throw new XenoError('HOST_ERROR', `socket path ${p} is longer than ${SUN_PATH_MAX} bytes: use a shorter state directory`);
      }
    }
    prepareRunDir(req.runDir, this.runAs);
    for (const p of [paths.qmp, paths.serial, paths.hvc, paths.qga, paths.pidfile]) rmSync(p, { force: true });
    const logFd = openSync(req.logFile, 'a');
    const cmd = [...(this.runAs ? runAsPrefix(this.runAs) : []), this.binary, ...this.argv(req)];
    const child = spawn(cmd[0]!, cmd.slice(1), {
      detached: true, // own session: no signal aimed at xenod's process group reaches the guests
      stdio: req.incomingFd === undefined ? ['ignore', logFd, logFd] : ['ignore', logFd, logFd, req.incomingFd],
    });
    const spawnedAt = performance.now();
    closeSync(logFd);
    child.unref();
    const pid = child.pid;
    if (pid === undefined) throw new XenoError('QEMU_ERROR', `cannot start ${this.binary}`);
    req.onSpawn?.(pid);
    let earlyExit: number | null | undefined;
    child.once('exit', (code) => (earlyExit = code));
    try {
      const qmp = await connectWhileAlive(paths.qmp, () => earlyExit !== undefined);
      return new QemuVm(pid, req.runDir, qmp, child, spawnedAt);
    } catch (e) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
      const log = readTail(req.logFile);
      throw new XenoError('QEMU_ERROR', `QEMU failed to start${earlyExit !== undefined ? ` (exit ${earlyExit})` : ''}: ${log || (e as Error).message}`);
    }
  }

  async adopt(pid: number, runDir: string, timeoutMs = 5000): Promise<Vm | null> {
    const paths = qemuPaths(runDir);
    // The pid must still be our QEMU (pids get reused): its argv names our run dir.
    if (!isQemuOf(pid, runDir)) return null;
    let qmp: QmpClient;
    try {
      qmp = await QmpClient.connect(paths.qmp, timeoutMs);
    } catch (e) {
      if (!isQemuOf(pid, runDir)) return null;
      throw new XenoError('TIMEOUT', `QEMU pid ${pid} runs but does not answer QMP on ${paths.qmp}: ${(e as Error).message}`);
    }
    return new QemuVm(pid, runDir, qmp);
  }

  findQemu(runDir: string, pidHint?: number | null): number | null {
    for (const pid of [pidHint, readPidFile(qemuPaths(runDir).pidfile)]) {
      if (pid && isQemuOf(pid, runDir)) return pid;
    }
    return this.listQemus(path.dirname(runDir)).find((q) => q.runDir === runDir)?.pid ?? null;
  }

  listQemus(runRoot: string): FoundQemu[] {
    const out: FoundQemu[] = [];
    const prefix = runRoot.endsWith('/') ? runRoot : runRoot + '/';
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const pid = Number(entry);
      const argv = processCmdline(pid);
      const i = argv.indexOf('-pidfile');
      const pidfile = i >= 0 ? argv[i + 1] : undefined;
      if (!pidfile?.startsWith(prefix) || path.basename(pidfile) !== 'qemu.pid' || processGone(pid)) continue;
      out.push({ pid, runDir: runDirOfPidfile(pidfile) });
    }
    return out;
  }

  async killQemu(pid: number, runDir: string): Promise<void> {
    if (!isQemuOf(pid, runDir)) return;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      return; // already gone
    }
    if (!(await waitProcessGone(pid, 10_000))) throw new XenoError('QEMU_ERROR', `QEMU pid ${pid} did not exit after SIGKILL`);
  }
}

/** The inverse of qemuPaths(runDir).pidfile: RUNDIR/qemu/qemu.pid, or RUNDIR/qemu.pid (legacy). */
function runDirOfPidfile(pidfile: string): string {
  const dir = path.dirname(pidfile);
  return path.basename(dir) === 'qemu' ? path.dirname(dir) : dir;
}

/** pid is alive and is the QEMU of runDir: its argv holds that run dir's pid file (pids get reused). */
function isQemuOf(pid: number, runDir: string): boolean {
  return !processGone(pid) && processCmdline(pid).includes(qemuPaths(runDir).pidfile);
}

function readPidFile(file: string): number | null {
  try {
    const n = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}

async function connectWhileAlive(qmpPath: string, exited: () => boolean): Promise<QmpClient> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (exited()) throw new Error('QEMU exited during start-up');
    try {
      return await QmpClient.connect(qmpPath, 300);
    } catch {
      await new Promise((r) => setTimeout(r, 5));
    }
  }
  throw new Error('QMP socket never came up');
}

function readTail(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-5).join(' | ');
  } catch {
    return '';
  }
}
