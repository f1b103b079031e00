/**
 * What one sample reads: host CPU counters, a domain's vcpu-thread CPU time, its vifs' counters
 * (from /sys/class/net of xenod's own network namespace) and its QEMU's balloon and block stats.
 */
import { blockEntryVdev } from '../hypervisor/qemu/disk-argv.js';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { threadStat } from '../host/proc.js';
import type { Vm } from '../hypervisor/backend.js';
import type { DomainConfig } from '../model/domain-config.js';
import type { NetSample, VbdSample } from '../model/stats.js';

/** Busy and total seconds over all host CPUs. */
export function hostCpuTimes(): { busy: number; total: number } {
  let busy = 0;
  let total = 0;
  for (const c of os.cpus()) {
    const b = c.times.user + c.times.nice + c.times.sys + c.times.irq;
    busy += b;
    total += b + c.times.idle;
  }
  return { busy: busy / 1000, total: total / 1000 };
}

/** Seconds of CPU of the given vcpu threads, and whether one is on a CPU right now. */
export function vcpuTime(pid: number, tids: readonly number[]): { sec: number; executing: boolean } {
  let sec = 0;
  let executing = false;
  for (const tid of tids) {
    const s = threadStat(pid, tid);
    if (!s) continue;
    sec += s.cpuTime;
    if (s.state === 'R') executing = true;
  }
  return { sec, executing };
}

function readCounter(ifname: string, name: string): number {
  try {
    return Number(readFileSync(`/sys/class/net/${ifname}/statistics/${name}`, 'utf8'));
  } catch {
    return NaN;
  }
}

const defaultVif = (domid: number, devid: number) => `vif${domid}.${devid}`;

/** Per-vif counters from the guest's side: the tap's tx is what the guest received. */
export function netSamples(domid: number, config: DomainConfig): NetSample[] {
  const out: NetSample[] = [];
  for (const v of config.vifs) {
    const vif = v.vifname ?? defaultVif(domid, v.devid);
    if (!/^[A-Za-z0-9_.-]{1,15}$/.test(vif)) continue; // never a path out of /sys/class/net
    const rxBytes = readCounter(vif, 'tx_bytes');
    if (Number.isNaN(rxBytes)) continue; // not plugged (yet)
    out.push({
      vif,
      rxBytes,
      txBytes: readCounter(vif, 'rx_bytes'),
      rxPackets: readCounter(vif, 'tx_packets'),
      txPackets: readCounter(vif, 'rx_packets'),
    });
  }
  return out;
}

interface BlockStatsEntry {
  device?: string;
  qdev?: string;
  'node-name'?: string;
  stats: { rd_bytes: number; wr_bytes: number; rd_operations: number; wr_operations: number };
}

/** query-blockstats, named by the config's vdev. */
export function vbdSamples(entries: readonly BlockStatsEntry[], _config: DomainConfig): VbdSample[] {
  const out: VbdSample[] = [];
  for (const e of entries) {
    const name = blockEntryVdev(e);
    if (!name) continue;
    out.push({ vdev: name, rdBytes: e.stats.rd_bytes, wrBytes: e.stats.wr_bytes, rdReqs: e.stats.rd_operations, wrReqs: e.stats.wr_operations });
  }
  return out;
}

export interface QmpFigures {
  balloonActual?: number;
  blockstats?: BlockStatsEntry[];
}

/**
 * The QMP part of a sample: the balloon (from what QEMU last said, no round trip while that is
 * fresh: vm.ts) and the block stats (a query, only for a domain with a disk); each bounded by `timeoutMs`.
 */
export async function qmpFigures(vm: Vm, timeoutMs: number, opts: { blockstats?: boolean } = {}): Promise<QmpFigures> {
  const [b, s] = await Promise.allSettled([
    vm.balloonActual(timeoutMs),
    opts.blockstats === false ? Promise.reject(new Error('no disk')) : vm.command<BlockStatsEntry[]>('query-blockstats', undefined, timeoutMs),
  ]);
  return {
    balloonActual: b.status === 'fulfilled' ? b.value : undefined,
    blockstats: s.status === 'fulfilled' ? s.value : undefined,
  };
}
