/** Pure output formatting, shaped after xm/xl. */
import type { DomainInfo, HostInfo } from '../model/api.js';

export function formatList(domains: DomainInfo[]): string {
  const lines = [`${'Name'.padEnd(40)} ${'ID'.padStart(5)} ${'Mem'.padStart(5)} ${'VCPUs'.padStart(5)} ${'State'.padStart(10)} ${'Time(s)'.padStart(9)}`];
  for (const d of domains) {
    lines.push(
      `${d.name.padEnd(40)} ${String(d.id).padStart(5)} ${String(d.memory).padStart(5)} ${String(d.vcpus).padStart(5)} ${d.stateFlags.padStart(10)} ${d.cpuTime.toFixed(1).padStart(9)}`,
    );
  }
  return lines.join('\n') + '\n';
}

/** Defined guests that are off, in list's columns (no id, no time). */
export function formatOffRows(off: Array<{ name: string; memory: number; vcpus: number }>): string {
  return off.map((d) => `${d.name.padEnd(40)} ${'-'.padStart(5)} ${String(d.memory).padStart(5)} ${String(d.vcpus).padStart(5)} ${'off'.padStart(10)} ${'0.0'.padStart(9)}\n`).join('');
}

export function formatUptime(seconds: number): string {
  const s = Math.floor(seconds);
  const days = Math.floor(s / 86400);
  const hms = `${Math.floor((s % 86400) / 3600)}:${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
  return days ? `${days} day${days > 1 ? 's' : ''}, ${hms}` : hms;
}

export function formatUptimeTable(domains: DomainInfo[]): string {
  const lines = [`${'Name'.padEnd(32)} ${'ID'.padStart(5)} Uptime`];
  for (const d of domains) lines.push(`${d.name.padEnd(32)} ${String(d.id).padStart(5)} ${formatUptime(d.uptime)}`);
  return lines.join('\n') + '\n';
}

export function formatInfo(h: HostInfo): string {
  const rows: Array<[string, string | number]> = [
    ['host', h.host],
    ['release', h.release],
    ['machine', h.machine],
    ['nr_cpus', h.nr_cpus],
    ['total_memory', h.total_memory],
    ['free_memory', h.free_memory],
    ['dom0_min_mem', h.dom0_min_mem],
    ['accel', h.accel],
    ['accel_reason', h.accel_reason],
    ['qemu_version', h.qemu_version],
    ['machine_type', h.machine_type],
    ['network_mode', h.network_mode],
    ['state_dir', h.state_dir],
    ['xeno_version', h.xeno_version],
  ];
  return rows.map(([k, v]) => `${k.padEnd(22)} : ${v}`).join('\n') + '\n';
}
