/**
 * `npm run bench -- storage [--rounds N] [--mb M] [--ops K]`, part 1: guest disk throughput of a
 * guest on xeno's defaults (a real xenod: -blockdev, cache=none + io_uring where the filesystem
 * takes O_DIRECT, the QEMU user's ACLs, cgroups) versus raw QEMU started by hand with the same
 * kind of disk and the same cache/aio flags (xeno's argv for the rest, its disk as a plain
 * `-drive if=virtio,cache=...,aio=...`, no xenod), in one run,
 * rounds alternating, only the measured guest running. Guest-side dd loops, timed by the guest's
 * /proc/uptime: sequential 1 MiB writes (fsync) and reads (caches dropped), and 4 KiB random
 * reads and writes (one dd per block: under TCG this is dominated by process start-up, so the
 * ratio is what matters, not the absolute IOPS). Both QEMUs sit in a cpu cgroup of their own
 * with the default weight, as xeno places every domain. Target: ratios >= 0.95.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { buildQemuArgv } from '../src/hypervisor/qemu/argv.js';
import { diskFactsFor } from '../src/hypervisor/qemu/disk-probe.js';
import { DirectGuest, guestConfig } from '../test/net/guest.js';
import { TestDaemon } from '../test/helpers/harness.js';
import { arg, hostAccel, median, rawCgroup, report, results } from './lib.js';

type Work = 'seq-write' | 'seq-read' | 'rand-read' | 'rand-write';
const WORKS: Work[] = ['seq-write', 'seq-read', 'rand-read', 'rand-write'];

function script(w: Work, mb: number, ops: number): string {
  const blocks = mb * 256;
  const loop = (dd: string) => `i=0; while [ $i -lt ${ops} ]; do ${dd}; i=$((i+1)); done`;
  switch (w) {
    case 'seq-write': return `dd if=/dev/zero of=/dev/vda bs=1M count=${mb} conv=fsync 2>/dev/null`;
    case 'seq-read': return `dd if=/dev/vda of=/dev/null bs=1M count=${mb} 2>/dev/null`;
    case 'rand-read': return loop(`dd if=/dev/vda of=/dev/null bs=4k count=1 skip=$(( (i * 7919) % ${blocks} )) 2>/dev/null`);
    case 'rand-write': return loop(`dd if=/dev/zero of=/dev/vda bs=4k count=1 seek=$(( (i * 7919) % ${blocks} )) conv=fsync 2>/dev/null`);
  }
}

/** Seconds the guest spent on one workload (its own clock), caches dropped first. */
async function timed(run: (cmd: string) => Promise<string>, w: Work, mb: number, ops: number): Promise<number> {
  const out = await run(`sync; echo 3 > /proc/sys/vm/drop_caches; a=$(cut -d' ' -f1 /proc/uptime); ${script(w, mb, ops)}; b=$(cut -d' ' -f1 /proc/uptime); echo "T $a $b"`);
  const m = /T ([\d.]+) ([\d.]+)/.exec(out);
  if (!m) throw new Error(`${w}: no timing in ${JSON.stringify(out)}`);
  return Math.max(0.01, Number(m[2]) - Number(m[1]));
}

export async function run(): Promise<void> {
  const rounds = arg('rounds', 3);
  const mb = arg('mb', 32);
  const ops = arg('ops', 200);
  const d = new TestDaemon();
  let raw: DirectGuest | undefined;
  let rawGroup: ReturnType<typeof rawCgroup> | undefined;
  try {
    await d.start();
    const accel = await hostAccel(d.dir);
    const imgX = path.join(d.dir, 'xeno.img');
    const imgR = path.join(d.dir, 'raw.img');
    for (const f of [imgX, imgR]) execFileSync('qemu-img', ['create', '-q', '-f', 'raw', f, `${mb * 2}M`]);
    await d.createGuest('bx', { disk: `[ 'format=raw, vdev=xvda, access=rw, target=${imgX}' ]` });
    await d.waitConsole('bx', /xeno-guest: up/, 240_000);
    // the flags xeno chose for its disk, given to raw QEMU too
    const facts = diskFactsFor({ target: imgR, format: 'raw', vdev: 'xvda', access: 'rw', devtype: 'disk' });
    raw = await DirectGuest.start({
      netns: '', name: 'raw', domid: 0, dir: path.join(d.dir, 'rawq'), nics: [], extra: '', track: () => undefined, bootTimeoutMs: 300_000,
      // xeno's own argv minus its disks (no xenod: no QEMU user, ACLs, cgroups), plus a plain -drive
      argv: (p) => [
        ...buildQemuArgv({ domid: 0, config: guestConfig('raw', ''), uuid: randomUUID(), machineType: 'pc', accel, paths: p, nics: [], tbSizeMb: 64 }),
        '-drive', `file=${imgR},format=raw,if=virtio,cache=${facts.cache},aio=${facts.aio}`,
      ],
    });
    // The same CPU scheduling as a xeno domain: raw QEMU in a cpu cgroup of its own, default weight
    // (xeno puts each domain's QEMU in one; on a loaded host a QEMU left among the root's tasks
    // would get a share per thread instead of one per guest).
    rawGroup = rawCgroup(`${d.dir}-raw`);
    await rawGroup.add(raw.pid);
    const xeno = (cmd: string) => d.guestRun('bx', cmd, 600_000);
    const plain = (cmd: string) => raw!.ok(cmd, 600_000);
    const only = async (which: 'x' | 'r') => {
      if (which === 'x') {
        await raw!.setRunning(false);
        await d.ok(['unpause', 'bx']).catch(() => undefined);
      } else {
        await d.ok(['pause', 'bx']).catch(() => undefined);
        await raw!.setRunning(true);
      }
    };
    const times: Record<'x' | 'r', Record<Work, number[]>> = { x: { 'seq-write': [], 'seq-read': [], 'rand-read': [], 'rand-write': [] }, r: { 'seq-write': [], 'seq-read': [], 'rand-read': [], 'rand-write': [] } };
    for (let i = 0; i < rounds; i++) {
      for (const which of (i % 2 ? ['r', 'x'] : ['x', 'r']) as Array<'x' | 'r'>) {
        await only(which);
        for (const w of WORKS) times[which][w].push(await timed(which === 'x' ? xeno : plain, w, mb, ops));
      }
    }
    const rate = (w: Work, s: number) => (w.startsWith('seq') ? mb / s : ops / s);
    const rows: Array<[string, string | number]> = [[`disk flags (both)`, `raw image, cache=${facts.cache}, aio=${facts.aio}`]];
    for (const w of WORKS) {
      const unit = w.startsWith('seq') ? 'MiB/s' : 'IOPS';
      const x = median(times.x[w].map((s) => rate(w, s)));
      const r = median(times.r[w].map((s) => rate(w, s)));
      results.push({ bench: 'storage', operation: `guest ${w}, raw disk`, unit, accel, raw: r, xeno: x, target: '>= 0.95x raw', met: x >= 0.95 * r });
      rows.push([`${w}: xeno (${unit}, median)`, x], [`${w}: raw QEMU (${unit}, median)`, r], [`${w}: ratio xeno/raw (target >= 0.95)`, x / r]);
    }
    report(`guest disk throughput, xeno defaults vs raw QEMU (${accel} guests, ${rounds} rounds, ${mb} MiB sequential, ${ops} x 4 KiB random)`, rows);
  } finally {
    raw?.kill();
    await rawGroup?.remove();
    await d.cleanup();
  }
}
