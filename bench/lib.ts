import type { Accel } from '../src/hypervisor/backend.js';
import type { DomainConfig } from '../src/model/domain-config.js';
import { DomainCgroups, cgroupInstanceName, detectCgroups } from '../src/host/cgroups.js';
import { GUEST, TestDaemon } from '../test/helpers/harness.js';

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

/** The accelerator QEMU gets on this host (xeno's own probe: kvm where it works, else tcg), for every bench's output. */
export async function hostAccel(cacheDir: string): Promise<Accel> {
  const { QemuBackend } = await import('../src/hypervisor/qemu/qemu-backend.js');
  return (await QemuBackend.create({ binary: 'qemu-system-x86_64', accel: 'auto', cacheDir })).caps.accel;
}

/** The test guest (kernel + initramfs, no disk, no vif) as a domain config, for the benches. */
export function guestConfig(name: string, memMb = 128): DomainConfig {
  return {
    name, type: 'pv', memory: memMb, maxmem: memMb, vcpus: 1, maxvcpus: 1, kernel: GUEST.kernel, ramdisk: GUEST.ramdisk,
    extra: 'quiet', disks: [], vifs: [], onPoweroff: 'destroy', onReboot: 'restart', onCrash: 'destroy',
  };
}

// ---- the summary table (`npm run bench -- all` writes it to stdout and bench/RESULTS.md) ------------

export interface ResultRow {
  bench: string;
  operation: string;
  unit: string;
  /** The raw-QEMU (or Node) baseline measured in the same run; null when the target is absolute. */
  raw: number | null;
  xeno: number;
  /** e.g. "<= 1.2x raw", "<= raw + 10 ms", "<= 150 MB". */
  target: string;
  met: boolean;
  accel: string;
}

export const results: ResultRow[] = [];

type Base = { bench: string; operation: string; unit: string; accel: string };

/** xeno <= max × raw. */
export function ratioRow(b: Base, raw: number, xeno: number, max: number): void {
  results.push({ ...b, raw, xeno, target: `<= ${max}x raw`, met: xeno <= max * raw });
}

/** xeno <= raw + plus (same unit). */
export function plusRow(b: Base, raw: number, xeno: number, plus: number): void {
  results.push({ ...b, raw, xeno, target: `<= raw + ${plus} ${b.unit}`, met: xeno <= raw + plus });
}

/** xeno <= cap (no baseline). */
export function capRow(b: Base, xeno: number, cap: number): void {
  results.push({ ...b, raw: null, xeno, target: `<= ${cap} ${b.unit}`, met: xeno <= cap });
}

/** A figure reported without a target (a phase of a breakdown). */
export function infoRow(b: Base, raw: number | null, xeno: number): void {
  results.push({ ...b, raw, xeno, target: '-', met: true });
}

const fmt = (v: number | null) => (v === null ? '-' : Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(1));

export function resultsTable(rows: ResultRow[]): string {
  const head = ['bench', 'operation', 'accel', 'unit', 'raw', 'xeno', 'ratio', 'target', 'met?'];
  const body = rows.map((r) => [
    r.bench, r.operation, r.accel, r.unit, fmt(r.raw), fmt(r.xeno),
    r.raw ? (r.xeno / r.raw).toFixed(2) : '-', r.target, r.target === '-' ? '' : r.met ? 'yes' : 'NO',
  ]);
  return [head, head.map(() => '---'), ...body].map((c) => `| ${c.join(' | ')} |`).join('\n') + '\n';
}

/**
 * A cgroup of the same weight as xenod gives each guest, for the raw QEMUs: on a busy host a group
 * competes as one task and a bare process per thread, so without it the two sides are not alike.
 * A host without cgroup v2 delegation runs the raw QEMUs as they are.
 */
export function rawCgroup(seed: string): { add: (pid: number) => Promise<void>; remove: () => Promise<void> } {
  let cg: DomainCgroups | undefined;
  try {
    cg = new DomainCgroups(detectCgroups(), cgroupInstanceName(seed));
    cg.create('raw');
    cg.setWeight('raw', 256);
  } catch {
    cg = undefined;
  }
  const done = onInterrupt(async () => cg?.removeAll());
  return {
    add: async (pid) => {
      await cg?.addPid('raw', pid).catch(() => undefined); // gone already
    },
    remove: async () => {
      done();
      await cg?.removeAll().catch(() => undefined);
    },
  };
}

// ---- cleanup on SIGINT / SIGTERM (a bench stopped half-way leaves no daemon, QEMU or cgroup) ----

const cleanups = new Set<() => Promise<unknown>>();

/** Run `fn` if the bench is interrupted; call the returned function once it has run normally. */
export function onInterrupt(fn: () => Promise<unknown>): () => void {
  cleanups.add(fn);
  return () => cleanups.delete(fn);
}

let interrupted = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    if (interrupted) return;
    interrupted = true;
    process.stderr.write(`bench: ${sig}, cleaning up\n`);
    // what was in flight fails as its daemon goes: not a reason to stop the cleanup
    process.on('uncaughtException', () => undefined);
    process.on('unhandledRejection', () => undefined);
    void Promise.allSettled([...cleanups].map((f) => f())).then(() => process.exit(130));
  });
}

/** A test daemon that is cleaned up even if the bench is interrupted. */
export function benchDaemon(opts?: ConstructorParameters<typeof TestDaemon>[0]): TestDaemon {
  const d = new TestDaemon(opts);
  const done = onInterrupt(() => d.cleanup());
  const cleanup = d.cleanup.bind(d);
  d.cleanup = async () => {
    done();
    await cleanup();
  };
  return d;
}
