/**
 * What `xeno info` and `xeno list` (-l, --json) show of the host and of each domain: memory, vcpus,
 * CPU time from the vcpu threads, xm's state flags, the restart history and QMP reachability.
 */
import os from 'node:os';
import { XENO_VERSION } from '../common/version.js';
import { threadStat } from '../host/proc.js';
import { guestAddresses } from '../hypervisor/qemu/guest-agent.js';
import type { DomainDetail, DomainInfo, GuestAgentInfo, HostInfo } from '../model/api.js';
import { stateFlags } from '../model/domain-state.js';
import { restartInfo } from './restart-policy.js';
import { unplugTrap } from './runtime.js';
import type { DomainRecord } from './store.js';
import type { Toolstack } from './toolstack.js';

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}

export function hostInfo(ts: Toolstack): HostInfo {
  const acc = ts.memoryAccount();
  const caps = ts.deps.backend.caps;
  return {
    host: os.hostname(),
    release: os.release(),
    machine: os.machine(),
    nr_cpus: os.cpus().length,
    total_memory: acc.total,
    free_memory: acc.free,
    dom0_min_mem: acc.dom0MinMem,
    accel: caps.accel,
    accel_reason: caps.accelReason,
    qemu_version: caps.qemuVersion,
    machine_type: caps.machineType,
    xeno_version: XENO_VERSION,
    state_dir: ts.deps.config.stateDir,
    network_mode: ts.deps.config.networkScript,
  };
}

/**
 * Domain-0's CPU figures and uptime are reused for this long: os.cpus() parses /proc/stat and
 * /proc/cpuinfo and os.uptime() is a system call, and ten lists at once need them once.
 */
const HOST_CPUS_TTL_MS = 250;
let hostCpusAt = -Infinity;
let hostCpusLast = { count: 0, cpuTime: 0, uptime: 0, at: 0 };

function hostCpus(): { count: number; cpuTime: number; uptime: number } {
  const now = performance.now();
  if (now - hostCpusAt >= HOST_CPUS_TTL_MS) {
    const cpus = os.cpus();
    const cpuTime = cpus.reduce((s, c) => s + (c.times.user + c.times.sys + c.times.nice + c.times.irq) / 1000, 0);
    hostCpusLast = { count: cpus.length, cpuTime, uptime: os.uptime(), at: now };
    hostCpusAt = now;
  }
  // the uptime moves on between two readings
  return { ...hostCpusLast, uptime: hostCpusLast.uptime + (now - hostCpusLast.at) / 1000 };
}

/** `records`: the domains as the caller just read them (list reads the store once). */
export function domain0Info(ts: Toolstack, records?: DomainRecord[]): DomainInfo {
  const acc = ts.memoryAccount(undefined, records);
  const { count, cpuTime, uptime } = hostCpus();
  return {
    id: 0, name: 'Domain-0', uuid: '00000000-0000-0000-0000-000000000000', state: 'running', stateFlags: 'r-----',
    memory: acc.dom0, maxmem: acc.total, vcpus: count, maxvcpus: count, cpuTime: round1(cpuTime),
    uptime: Math.round(uptime), startTime: Date.now() / 1000 - uptime,
  };
}

/**
 * A list's vcpu figures are reused for this long: with 100 guests, reading every vcpu thread's
 * /proc stat is most of what a list costs, and ten clients listing at once need not each pay it.
 */
const VCPU_FIGURES_TTL_MS = 500;
const vcpuFigures = new WeakMap<object, { at: number; pid: number; tids: number; cpuTime: number; executing: boolean }>();

/** CPU seconds of a domain's vcpu threads and whether one of them is running now (xm's r flag). */
function vcpuFiguresOf(live: { vcpuTids: number[] }, pid: number): { cpuTime: number; executing: boolean } {
  const now = performance.now();
  const cached = vcpuFigures.get(live);
  if (cached && cached.pid === pid && cached.tids === live.vcpuTids.length && now - cached.at < VCPU_FIGURES_TTL_MS) return cached;
  let cpuTime = 0;
  let executing = false;
  for (const tid of live.vcpuTids) {
    const s = threadStat(pid, tid);
    if (!s) continue;
    cpuTime += s.cpuTime;
    if (s.state === 'R') executing = true;
  }
  vcpuFigures.set(live, { at: now, pid, tids: live.vcpuTids.length, cpuTime, executing });
  return { cpuTime, executing };
}

export function domainInfo(ts: Toolstack, rec: DomainRecord): DomainInfo {
  const l = ts.liveById(rec.id);
  const { cpuTime, executing } = l && rec.pid ? vcpuFiguresOf(l, rec.pid) : { cpuTime: 0, executing: false };
  return {
    id: rec.id,
    name: rec.name,
    uuid: rec.uuid,
    state: rec.state,
    stateFlags: stateFlags(rec.state, executing),
    memory: rec.config.memory,
    maxmem: rec.config.maxmem,
    vcpus: l ? l.vcpuTids.length : rec.config.vcpus,
    maxvcpus: rec.config.maxvcpus,
    cpuTime: round1(cpuTime),
    pid: rec.pid ?? undefined,
    uptime: Math.max(0, Math.round(Date.now() / 1000 - rec.startTime)),
    startTime: rec.startTime,
    machineType: rec.machineType,
    accel: rec.accel,
    ...restartInfo(rec),
    ...(ts.adoption.unanswered(rec.id) ? { qmp: 'unresponsive' as const } : {}),
    ...(typeof rec.extra.vnc === 'string' ? { vnc: rec.extra.vnc } : {}),
    ...(unplugTrap(rec, ts.deps.backend.caps.qemuVersion) ? { unpluggedSinceBoot: true } : {}),
  };
}

export async function domainDetail(ts: Toolstack, rec: DomainRecord): Promise<DomainDetail> {
  const base = domainInfo(ts, rec);
  let balloonActual: number | undefined;
  const l = ts.liveById(rec.id);
  if (l && !l.vm.exited) {
    const bytes = await l.vm.balloonActual(2000); // no answer: left out
    if (bytes !== undefined) balloonActual = Math.round(bytes / 1048576);
  }
  const guest = l && !l.vm.exited ? await guestAgentInfo(ts, rec) : undefined;
  return { ...base, config: rec.config, balloonActual, ...(guest ? { guest } : {}) };
}

/** The guest agent's view, or undefined when the guest runs none (or is paused). */
async function guestAgentInfo(ts: Toolstack, rec: DomainRecord): Promise<GuestAgentInfo | undefined> {
  if (rec.state !== 'running') return undefined;
  const qga = ts.guestAgent(rec);
  try {
    const ifaces = await qga.interfaces(2000);
    const os = await qga.osInfo(2000).catch(() => undefined);
    return { addresses: guestAddresses(ifaces), os: os?.['pretty-name'] ?? os?.name, kernel: os?.['kernel-release'] };
  } catch {
    return undefined;
  }
}
