/**
 * The QEMU backend: launches one QEMU per domain, detached into its own session so that the
 * daemon's death (even kill -9) never takes the guests with it, and re-adopts them by pid + QMP.
 */
import { execFile, spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { XenoError } from '../../common/errors.js';
import { processCmdline, processGone } from '../../host/proc.js';
import type { AccelChoice } from '../../model/daemon-config.js';
import type { HostCaps, HypervisorBackend, LaunchRequest, Vm } from '../backend.js';
import { detectAccel } from './accel.js';
import { buildQemuArgv, type QemuPaths } from './argv.js';
import { QmpClient } from './qmp.js';
import { QemuVm } from './vm.js';

const execFileP = promisify(execFile);

/** Unix socket paths are limited to 107 bytes. */
const SUN_PATH_MAX = 107;

export function qemuPaths(runDir: string): QemuPaths {
  return {
    qmp: path.join(runDir, 'qmp.sock'),
    serial: path.join(runDir, 'serial.sock'),
    pidfile: path.join(runDir, 'qemu.pid'),
    qga: path.join(runDir, 'qga.sock'),
  };
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
  ) {}

  static async create(opts: { binary: string; accel: AccelChoice; cacheDir?: string; tbSizeMb?: number }): Promise<QemuBackend> {
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
      );
    } catch (e) {
      if (e instanceof XenoError) throw e;
      throw new XenoError('QEMU_ERROR', `cannot run ${opts.binary} (install qemu-system-x86): ${(e as Error).message}`);
    }
  }

  /** MiB QEMU itself needs beyond guest RAM: its TCG translation buffer plus a fixed allowance. */
  get overheadMb(): number {
    return (this.caps.accel === 'tcg' ? this.tbSizeMb : 0) + 48;
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
      tbSizeMb: this.tbSizeMb,
    });
  }

  async launch(req: LaunchRequest): Promise<Vm> {
    const paths = qemuPaths(req.runDir);
    for (const p of [paths.qmp, paths.serial, paths.qga]) {
      if (Buffer.byteLength(p) > SUN_PATH_MAX) {
        throw new XenoError('HOST_ERROR', `socket path ${p} is longer than ${SUN_PATH_MAX} bytes: use a shorter state directory`);
      }
    }
    mkdirSync(req.runDir, { recursive: true, mode: 0o700 });
    for (const p of [paths.qmp, paths.serial, paths.qga, paths.pidfile]) rmSync(p, { force: true });
    const logFd = openSync(req.logFile, 'a');
    const child = spawn(this.binary, this.argv(req), {
      detached: true, // own session: no signal aimed at xenod's process group reaches the guests
      stdio: ['ignore', logFd, logFd],
    });
    const spawnedAt = performance.now();
    closeSync(logFd);
    child.unref();
    const pid = child.pid;
    if (pid === undefined) throw new XenoError('QEMU_ERROR', `cannot start ${this.binary}`);
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

  async adopt(pid: number, runDir: string): Promise<Vm | null> {
    const paths = qemuPaths(runDir);
    // The pid must still be our QEMU (pids get reused): its argv names our QMP socket.
    if (processGone(pid) || !processCmdline(pid).some((a) => a.includes(paths.qmp))) return null;
    try {
      const qmp = await QmpClient.connect(paths.qmp, 5000);
      return new QemuVm(pid, runDir, qmp);
    } catch {
      return null;
    }
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
