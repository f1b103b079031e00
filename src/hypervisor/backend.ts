/**
 * The hypervisor backend interface. The toolstack talks only to this; QEMU (with KVM or TCG) sits
 * behind it. The accelerator is chosen once when the backend starts and reported, never re-guessed.
 */
import type { EventEmitter } from 'node:events';
import type { DomainConfig } from '../model/domain-config.js';
import type { NicBackend } from './qemu/argv.js';
import type { DiskHostFacts } from './qemu/disk-argv.js';

export type Accel = 'kvm' | 'tcg';

export interface HostCaps {
  accel: Accel;
  /** Why this accelerator (shown by `xeno info` and logged at start). */
  accelReason: string;
  qemuVersion: string;
  /** The versioned machine type new domains get, e.g. pc-i440fx-7.2. */
  machineType: string;
}

/** The fd number QEMU gets LaunchRequest.incomingFd as (after stdin, stdout, stderr). */
export const INCOMING_FD = 3;

export interface LaunchRequest {
  domid: number;
  uuid: string;
  config: DomainConfig;
  /** Directory for this domain's sockets and pidfile. */
  runDir: string;
  machineType: string;
  nics: NicBackend[];
  startPaused?: boolean;
  incoming?: boolean;
  /** With incoming: a directory holding keys.psk for a TLS-PSK migration stream. */
  tlsPskDir?: string;
  /**
   * With incoming: an open file QEMU inherits as its fd 3 (INCOMING_FD), read by
   * `migrate-incoming fd:3` (a restore: QEMU reads the save file itself, positioned at its payload).
   */
  incomingFd?: number;
  /** Where QEMU's stderr goes. */
  logFile: string;
  /** Per vdev: disk backend facts; absent = probed on this host at launch (qemu/disk-probe.ts). */
  diskFacts?: ReadonlyMap<string, DiskHostFacts>;
  /**
   * Called synchronously with QEMU's pid right after the spawn, before QMP answers: the caller
   * records it, so a daemon that dies during the start-up can still find this QEMU.
   */
  onSpawn?: (pid: number) => void;
}

/** A QEMU found on the host by its run dir (pid file, then command line). */
export interface FoundQemu {
  pid: number;
  runDir: string;
}

export type VmRunState = 'running' | 'paused' | 'shutdown' | 'panicked' | 'inmigrate' | 'postmigrate' | 'other';

export interface VcpuThread {
  index: number;
  threadId: number;
}

/** What a guest did that the toolstack must answer (on_poweroff, on_reboot, on_crash). */
export type GuestStopReason = 'poweroff' | 'reboot' | 'crash';

/**
 * A running VM. Emits 'guest-stop' (GuestStopReason) when the guest powers off, reboots or panics,
 * 'exit' once QEMU is gone, and 'qmp-event' for every QMP event.
 */
export interface Vm extends EventEmitter {
  readonly pid: number;
  readonly runDir: string;
  readonly exited: boolean;
  /** How a QEMU this process started ended (`exit code 1`, `killed by SIGKILL`), once known. */
  readonly exitStatus?: string;
  /** performance.now() when QEMU was spawned (undefined for an adopted VM). */
  readonly spawnedAt?: number;
  command<T = unknown>(cmd: string, args?: Record<string, unknown>, timeoutMs?: number): Promise<T>;
  runState(): Promise<VmRunState>;
  /**
   * The balloon's actual size in bytes, from what QEMU last said (events and answers) while that is
   * fresh, else asked; undefined when QEMU has no balloon or did not answer.
   */
  balloonActual(timeoutMs?: number): Promise<number | undefined>;
  /**
   * What the guest did, for a QEMU found stopped (runstate shutdown or guest-panicked) by a daemon
   * that was not watching; null while it runs.
   */
  stopReason(): Promise<GuestStopReason | null>;
  pause(): Promise<void>;
  resume(): Promise<void>;
  /** ACPI power button. */
  powerdown(): Promise<void>;
  reset(): Promise<void>;
  /** Ask QEMU to exit and resolve once the process is gone (SIGKILL after graceMs). */
  kill(graceMs?: number): Promise<void>;
  vcpuThreads(): Promise<VcpuThread[]>;
  /** Resolves when QEMU is gone. */
  waitExit(timeoutMs?: number): Promise<void>;
  /** Drop the QMP connection without touching QEMU (daemon shutdown). */
  detach(): void;
}

export interface HypervisorBackend {
  readonly caps: HostCaps;
  launch(req: LaunchRequest): Promise<Vm>;
  /**
   * Re-attach to a QEMU left running by an earlier xenod; null when it is gone (or the pid is no
   * longer that QEMU). Throws TIMEOUT when it runs but QMP does not answer within timeoutMs.
   */
  adopt(pid: number, runDir: string, timeoutMs?: number): Promise<Vm | null>;
  /** The pid of the QEMU running for runDir (its pid file or pidHint, verified by its command line, else a scan). */
  findQemu(runDir: string, pidHint?: number | null): number | null;
  /** Every QEMU whose run dir lies under runRoot (orphans included). */
  listQemus(runRoot: string): FoundQemu[];
  /** SIGKILL the QEMU of runDir (if pid is still it) and wait until it is gone. */
  killQemu(pid: number, runDir: string): Promise<void>;
  /** The argv launch() would use (for dry runs and the raw-QEMU benchmark). */
  argv(req: LaunchRequest): string[];
  readonly binary: string;
}
