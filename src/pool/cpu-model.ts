/**
 * CPU levelling: one QEMU CPU model every host of the pool can run, so a guest started on any host
 * migrates to any other (a guest under `-cpu host` would carry the source's features along and
 * crash on a host without them). Under KVM it is the newest model of MODELS whose features every
 * KVM host has (by its /proc/cpuinfo flags); under TCG QEMU emulates the same qemu64 everywhere.
 */
import { readFileSync } from 'node:fs';

/** QEMU 7.2's x86 models, oldest first, with the Linux cpuinfo flags each adds to the one before. */
export const MODELS: Array<{ model: string; adds: string[] }> = [
  { model: 'qemu64', adds: [] },
  { model: 'Nehalem', adds: ['ssse3', 'sse4_1', 'sse4_2', 'popcnt', 'cx16'] },
  { model: 'Westmere', adds: ['aes', 'pclmulqdq'] },
  { model: 'SandyBridge', adds: ['avx', 'xsave', 'x2apic', 'tsc_deadline_timer'] },
  { model: 'IvyBridge', adds: ['f16c', 'rdrand', 'fsgsbase', 'smep', 'erms'] },
  { model: 'Haswell-noTSX', adds: ['avx2', 'bmi1', 'bmi2', 'fma', 'movbe', 'invpcid', 'abm'] },
  { model: 'Broadwell-noTSX', adds: ['adx', 'rdseed', 'smap', '3dnowprefetch'] },
];

/** The flags of this host's first CPU. */
export function hostCpuFlags(cpuinfo = '/proc/cpuinfo'): string[] {
  try {
    const m = /^flags\s*:\s*(.*)$/m.exec(readFileSync(cpuinfo, 'utf8'));
    return m ? m[1]!.trim().split(/\s+/) : [];
  } catch {
    return [];
  }
}

/** The newest model all these flag sets support (qemu64 at least). */
export function levelledModel(flagSets: string[][]): string {
  const common = flagSets.length ? flagSets.map((f) => new Set(f)).reduce((a, b) => new Set([...a].filter((x) => b.has(x)))) : new Set<string>();
  let best = MODELS[0]!.model;
  const need: string[] = [];
  for (const m of MODELS) {
    need.push(...m.adds);
    if (!need.every((f) => common.has(f))) break;
    best = m.model;
  }
  return best;
}

export interface CpuHost {
  accel: 'kvm' | 'tcg';
  cpuFlags: string[];
}

/**
 * The pool's model as host-list shows it: the levelled model of its KVM hosts, or under TCG
 * (no KVM host) qemu64 everywhere, said as such.
 */
export function poolCpuModel(hosts: CpuHost[]): { model: string; accel: 'kvm' | 'tcg'; note: string } {
  const kvm = hosts.filter((h) => h.accel === 'kvm');
  if (!kvm.length) return { model: 'qemu64', accel: 'tcg', note: 'TCG: QEMU emulates the same qemu64 CPU on every host (no levelling needed)' };
  const model = levelledModel(kvm.map((h) => h.cpuFlags));
  const tcg = hosts.length - kvm.length;
  return { model, accel: 'kvm', note: `KVM: -cpu ${model}, the newest model all ${kvm.length} KVM host(s) support${tcg ? ` (${tcg} TCG host(s) run qemu64)` : ''}` };
}
