import type { DomainConfig } from '../src/model/domain-config.js';
import { GUEST } from '../test/helpers/harness.js';

/** Shared benchmark helpers: medians, ratios, and a printed table. Timing only here, never in tests. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function report(title: string, rows: Array<[string, string | number]>): void {
  process.stdout.write(`\n== ${title}\n`);
  for (const [k, v] of rows) process.stdout.write(`${k.padEnd(44)} ${typeof v === 'number' ? v.toFixed(3) : v}\n`);
}

export function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

/** The test guest (kernel + initramfs, no disk, no vif) as a domain config, for the benches. */
export function guestConfig(name: string, memMb = 128): DomainConfig {
  return {
    name, type: 'pv', memory: memMb, maxmem: memMb, vcpus: 1, maxvcpus: 1, kernel: GUEST.kernel, ramdisk: GUEST.ramdisk,
    extra: 'quiet', disks: [], vifs: [], onPoweroff: 'destroy', onReboot: 'restart', onCrash: 'destroy',
  };
}
