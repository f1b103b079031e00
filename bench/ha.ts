/**
 * `npm run bench -- ha [--rounds N] [--ttl S] [--verbose] [--no-blip]`: pool HA timing on the pool lab (three hosts in network
 * namespaces, the real 3-member etcd with TLS, a real xenod per host, a real guest: test/helpers/
 * pool-lab.ts), at the production timing by default (lease TTL 10 s, fence 6 s):
 *   - restart: from killing the HA guest's host outright (every process in its namespace: xenod,
 *     QEMU, etcd member) to the guest's first heartbeat on another host, over N rounds; the host
 *     is brought back (its etcd member and xenod) between rounds; one round in three first moves
 *     etcd's leadership to the host it kills (the others, away from it); `--verbose` prints the
 *     survivors' HA log lines of each round;
 *   - the longest cut of the guest's host's link that fences nothing (bisection; a trial fences
 *     when that host's xenod logs a fence or the guest's QEMU is gone); `--no-blip` skips it.
 * `--agent`: the same at agent level, guests being processes (bench/ha-agent.ts).
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fenceMsFor } from '../src/pool/ha/service.js';
import { procStart } from '../src/pool/ha/fence-watchdog.js';
import { GUEST, guestCfg, sleep } from '../test/helpers/harness.js';
import { PoolLab, type LabHost } from '../test/helpers/pool-lab.js';
import { memberStatus, moveLeader, waitEtcdWritable } from '../test/helpers/pool-lab-etcd.js';
import { arg, capRow, infoRow, median, report } from './lib.js';

interface Row { name: string; host: string | null; state: string }

const GUESTNAME = 'habench';
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
const uptimeMs = () => Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 1000;

async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs: number, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await Promise.resolve(fn()).catch(() => undefined);
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await sleep(everyMs);
  }
}

class Bench {
  constructor(readonly lab: PoolLab) {}

  up(): LabHost[] {
    return this.lab.hosts.filter((h) => h.etcd);
  }

  /** Where the guest runs now, as a live host sees the pool. */
  async where(): Promise<string | undefined> {
    for (const h of this.up()) {
      const rows = JSON.parse(await this.lab.daemon(h.name).ok(['list', '--pool', '--json']).catch(() => '[]')) as Row[];
      const r = rows.find((x) => x.name === GUESTNAME && x.host !== null && x.state !== 'off');
      if (r) return r.host!;
    }
    return undefined;
  }

  /** Until the guest beats on some host (past each console's `from` offset); the host. */
  async firstBeat(hosts: string[], from: Map<string, number>, timeoutMs: number): Promise<string> {
    return until('the first heartbeat elsewhere', () => hosts.find((h) => /heartbeat \d+/.test(this.lab.daemon(h).consoleLog(GUESTNAME).slice(from.get(h) ?? 0))), timeoutMs, 50);
  }

  consoleMarks(): Map<string, number> {
    return new Map(this.lab.hosts.map((h) => [h.name, this.lab.daemon(h.name).consoleLog(GUESTNAME).length]));
  }

  /** A killed host back: its etcd member, then its xenod (which re-adopts nothing: its QEMU died too). */
  async revive(h: LabHost, ttl: number): Promise<void> {
    this.lab.startEtcd(h);
    await waitEtcdWritable(this.lab, this.lab.hosts);
    await this.lab.startDaemon(h, [`(xeno-pool-lease-ttl ${ttl})`]);
    await until(`${h.name} up in the pool`, async () => {
      const r = JSON.parse(await this.lab.daemon(h.name).ok(['host-list', '--json'])) as { hosts: Array<{ name: string; state: string }> };
      return r.hosts.every((x) => x.state === 'up') || undefined;
    }, 120_000, 500);
  }

  /** The host whose etcd member leads now. */
  async etcdLeader(): Promise<string> {
    const st = await Promise.all(this.up().map((h) => memberStatus(this.lab, h)));
    return st.find((s) => s.id === s.leader)?.host.name ?? '?';
  }

  /**
   * Kill the guest's host outright; ms to the guest's first heartbeat on another host, and to its
   * new QEMU's start; and whether the killed host's etcd member led (then etcd elects another
   * leader, which extends every lease by its election timeout: the lost host's too).
   */
  async restartRound(ttl: number, killEtcdLeader: boolean): Promise<{ ms: number; qemuMs: number; from: string; to: string; ledEtcd: boolean }> {
    const from = await until('the guest placed', () => this.where(), 120_000, 500);
    // etcd's leadership put where the round wants it: on the host to kill, or on another
    const away = this.up().find((h) => h.name !== from)!;
    await moveLeader(this.lab, this.up(), killEtcdLeader ? this.lab.host(from) : away);
    await sleep(2000);
    const ledEtcd = (await this.etcdLeader()) === from;
    const others = this.lab.hosts.filter((h) => h.name !== from).map((h) => h.name);
    const marks = this.consoleMarks();
    const logMarks = new Map(others.map((h) => [h, this.lab.daemon(h).log.length]));
    const t0 = performance.now();
    const wall0 = Date.now();
    const up0 = uptimeMs();
    await this.lab.killHost(this.lab.host(from));
    const to = await this.firstBeat(others, marks, 300_000);
    const ms = performance.now() - t0;
    if (process.argv.includes('--verbose')) this.printHaLog(logMarks, wall0);
    // the new QEMU's start (/proc/<pid>/stat, clock ticks since boot): the lease's expiry and the
    // leader's decision before it, the guest's boot after it
    const pid = (await this.lab.daemon(to).row(GUESTNAME))?.pid;
    const qemuMs = pid ? (Number(procStart(pid)) * 1000) / CLK_TCK - up0 : NaN;
    await this.revive(this.lab.host(from), ttl);
    return { ms, qemuMs, from, to, ledEtcd };
  }

  /** `--verbose`: the survivors' HA lines since the kill, at their time after it. */
  printHaLog(marks: Map<string, number>, wall0: number): void {
    const lines: Array<{ t: number; host: string; msg: string }> = [];
    for (const [h, mark] of marks) {
      for (const line of this.lab.daemon(h).log.slice(mark).split('\n')) {
        try {
          const j = JSON.parse(line) as { time?: string | number; msg?: string };
          if (j.time && j.msg && /\bha |pool|lease|etcd/i.test(j.msg)) lines.push({ t: new Date(j.time).getTime() - wall0, host: h, msg: j.msg });
        } catch {
          // not a JSON line
        }
      }
    }
    for (const l of lines.sort((a, b) => a.t - b.t)) process.stdout.write(`  +${(l.t / 1000).toFixed(2)} s ${l.host}: ${l.msg.slice(0, 220)}\n`);
  }

  /** Cut the guest's host's link for `ms`: did it fence? (then waits for the guest to run again) */
  async blipFences(ms: number): Promise<boolean> {
    const on = await until('the guest placed', () => this.where(), 120_000, 500);
    const d = this.lab.daemon(on);
    await d.waitConsole(GUESTNAME, /heartbeat \d+/, 300_000);
    const pid = (await d.row(GUESTNAME))!.pid!;
    const start = procStart(pid);
    const logMark = d.log.length;
    const marks = this.consoleMarks();
    const h = this.lab.host(on);
    await this.lab.cut(h);
    await sleep(ms);
    await this.lab.restore(h);
    await sleep(3000);
    const fenced = /fence \(/.test(d.log.slice(logMark)) || procStart(pid) !== start;
    if (fenced) await this.firstBeat(this.lab.hosts.map((x) => x.name), marks, 300_000);
    await sleep(2000);
    return fenced;
  }
}

export async function run(): Promise<void> {
  if (process.argv.includes('--agent')) return ((await import('./ha-agent.js')) as { run: () => Promise<void> }).run();
  const rounds = arg('rounds', 5);
  const ttl = arg('ttl', 10);
  const fence = fenceMsFor(ttl);
  const lab = await PoolLab.up({ config: [`(xeno-pool-lease-ttl ${ttl})`] });
  try {
    const b = new Bench(lab);
    const d1 = lab.daemon('host1');
    const accel = (JSON.parse(await d1.ok(['host-list', '--json'])) as { hosts: Array<{ accel: string }> }).hosts[0]!.accel;
    const img = path.join(lab.images, `${GUESTNAME}.ext4`);
    copyFileSync(GUEST.disk, img);
    await d1.ok(['new', d1.writeCfg(GUESTNAME, guestCfg(GUESTNAME, { ha: 1 }) + `disk = [ 'format=raw, vdev=xvda, access=rw, target=${img}' ]\n`)]);
    await d1.ok(['start', GUESTNAME, '--on', 'host1']);
    await d1.waitConsole(GUESTNAME, /heartbeat \d+/, 300_000);
    const times: number[] = [];
    const qemu: number[] = [];
    const led: number[] = [];
    const notLed: number[] = [];
    for (let i = 0; i < rounds; i++) {
      // one round in three kills the host whose member leads etcd (etcd elects a leader first),
      // as often as a host that dies in a pool of three leads it when leadership is where etcd put it
      const r = await b.restartRound(ttl, i % 3 === 0);
      times.push(r.ms);
      qemu.push(r.qemuMs);
      (r.ledEtcd ? led : notLed).push(r.ms);
      process.stdout.write(`round ${i + 1}: ${r.from} killed -> new QEMU on ${r.to} after ${(r.qemuMs / 1000).toFixed(2)} s, its first heartbeat after ${(r.ms / 1000).toFixed(2)} s${r.ledEtcd ? ` (${r.from} led etcd)` : ''}\n`);
    }
    const s = [...times].sort((x, y) => x - y);
    let lo = Math.max(500, fence - 3000);
    let hi = fence + 1000;
    const trials: string[] = [];
    const blip = !process.argv.includes('--no-blip');
    while (blip && hi - lo > 250) {
      const mid = Math.round((lo + hi) / 2);
      const f = await b.blipFences(mid);
      trials.push(`${(mid / 1000).toFixed(2)} s ${f ? 'fenced' : 'nothing'}`);
      process.stdout.write(`blip ${(mid / 1000).toFixed(2)} s: ${f ? 'fenced' : 'nothing fenced'}\n`);
      if (f) hi = mid;
      else lo = mid;
    }
    report(`pool HA on the lab (${accel}; 3 hosts, 3-member etcd with TLS, real xenods and guest; lease TTL ${ttl} s, fence ${fence} ms)`, [
      ['host killed -> first heartbeat elsewhere, median (s)', median(times) / 1000],
      ['  min (s)', s[0]! / 1000],
      ['  max (s)', s[s.length - 1]! / 1000],
      ['  rounds', times.map((t) => (t / 1000).toFixed(2)).join(', ')],
      ['  when the killed host led etcd, median (s)', led.length ? `${(median(led) / 1000).toFixed(2)} (${led.length} rounds)` : '-'],
      ['  when it did not, median (s)', notLed.length ? `${(median(notLed) / 1000).toFixed(2)} (${notLed.length} rounds)` : '-'],
      ['host killed -> new QEMU started elsewhere, median (s)', median(qemu) / 1000],
      ...(blip
        ? ([
            ['longest link cut that fences nothing (s)', lo / 1000],
            ['  shortest cut tried that fenced (s)', hi / 1000],
            ['  trials', trials.join('; ')],
          ] as Array<[string, string | number]>)
        : []),
    ]);
    const base = { bench: 'ha', unit: 's', accel };
    capRow({ ...base, operation: 'host killed -> HA guest heartbeat elsewhere (median)' }, median(times) / 1000, 15);
    if (led.length) infoRow({ ...base, operation: 'the same, rounds where the killed host led etcd (median)' }, null, median(led) / 1000);
    infoRow({ ...base, operation: 'host killed -> new QEMU started elsewhere (median)' }, null, median(qemu) / 1000);
    if (blip) infoRow({ ...base, operation: 'longest blip without fencing' }, null, lo / 1000);
  } finally {
    await lab.down();
  }
}
