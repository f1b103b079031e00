/**
 * Pool HA fencing when xenod itself is gone (the pool lab: three hosts in network namespaces, a
 * 3-member etcd, real xenods, a real guest with a writable disk; QEMU's own image locking OFF, so
 * nothing but xeno's fencing keeps the guest from running twice):
 *   - xenod of the guest's host killed -9 and started again at once: its fence watchdog kept
 *     guarding, the new xenod reconnects to it and re-uses its still-live lease: the same QEMU goes
 *     on, nothing moves;
 *   - xenod killed -9 for good, its QEMU alive: the watchdog SIGKILLs the QEMU at the fence time,
 *     the leader restarts the guest elsewhere after the lease TTL: the old QEMU's exit (seen by an
 *     exit watch, in seconds since boot) is BEFORE the new QEMU's start (/proc/<pid>/stat), and the
 *     guest runs on exactly one host;
 *   - the guest's (new) host cut off from the others, its xenod alive: its QEMU exits (xenod's guard
 *     and its watchdog fence at F) before the guest's new QEMU starts on the third host; the fenced
 *     host drops its record of the guest with its QEMU; back in touch it starts nothing, nothing is
 *     assigned again, and every host's `xeno list --pool` shows the guest once, on the new host,
 *     its new QEMU running on a lease TTL later.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { procStart } from '../src/pool/ha/fence-watchdog.js';
import { GUEST, guestCfg } from './helpers/harness.js';
import { PoolLab } from './helpers/pool-lab.js';
import { until } from './helpers/relocation-lab.js';

interface PoolRow {
  name: string;
  host: string | null;
  state: string;
}

const TTL = 15; // fence time 9 s: room for a restarted xenod to come up on this loaded machine
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
const uptime = () => Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls the pid every 20 ms; resolves with the uptime (s) at which it was first seen gone (or a zombie). */
function exitWatch(pid: number, start: string): { gone: () => number | undefined; stop: () => void } {
  let at: number | undefined;
  const t = setInterval(() => {
    if (at === undefined && procStart(pid) !== start) at = uptime();
  }, 20);
  return { gone: () => at, stop: () => clearInterval(t) };
}

describe('pool HA: xenod crashed while its QEMU runs', { timeout: 1_200_000 }, () => {
  let lab: PoolLab;

  before(async () => {
    process.env.XENO_TEST_QEMU_FILE_LOCKING = 'off'; // the xenods (and their QEMUs) inherit it
    lab = await PoolLab.up({ config: [`(xeno-pool-lease-ttl ${TTL})`] });
  });
  after(async () => {
    await lab?.down();
  });

  const poolList = async (host: string) => JSON.parse(await lab.daemon(host).ok(['list', '--pool', '--json'])) as PoolRow[];
  /** The guest's QEMUs alive on a host (a fenced guest's record may stay, its QEMU gone). */
  const localCount = async (host: string, name: string) =>
    (JSON.parse(await lab.daemon(host).ok(['list', '--json'])) as Array<{ name: string; pid?: number }>).filter((d) => d.name === name && d.pid && procStart(d.pid)).length;
  const qemuPid = async (host: string, name: string) => {
    const pid = (await lab.daemon(host).row(name))?.pid;
    assert.ok(pid, `${name} has a QEMU pid on ${host}`);
    return pid;
  };

  test('kill -9 of xenod, restarted at once: the same QEMU goes on, nothing moves', async () => {
    const d1 = lab.daemon('host1');
    const d2 = lab.daemon('host2');
    const img = path.join(lab.images, 'fg.ext4');
    copyFileSync(GUEST.disk, img);
    const cfg = d1.writeCfg('fg', guestCfg('fg', { ha: 1 }) + `disk = [ 'format=raw, vdev=xvda, access=rw, target=${img}' ]\n`);
    await d1.ok(['new', cfg]);
    await d1.ok(['start', 'fg', '--on', 'host2']);
    await d2.waitConsole('fg', /heartbeat \d+/, 180_000);
    const pid = await qemuPid('host2', 'fg');
    const start = procStart(pid)!;
    assert.ok(readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('"locking":"off"'), 'QEMU runs with its image locking off');
    assert.ok(existsSync(path.join(d2.stateDir, 'ha-fence.sock')), 'the fence watchdog listens');
    const watch = exitWatch(pid, start);
    try {
      await d2.stop('SIGKILL');
      const fenceLog = path.join(d2.stateDir, 'ha-fence.log');
      await until('the watchdog guards the QEMU with xenod gone', () => readFileSync(fenceLog, 'utf8').includes(`guarding ${pid}`), 2000, 50);
      // restarted at once, as `systemctl restart` does: the new xenod must renew within F of the old
      // one's last renewal, and its start (QEMU probes, re-adoption, etcd over TLS) took 7 s on a
      // loaded 2-core host; a 2 s pause on top fenced there
      await d2.start();
      // two lease TTLs: long past the fence time and the old lease's expiry, had it not been re-used
      await sleep(2 * TTL * 1000);
      assert.equal(watch.gone(), undefined, `the QEMU was never killed; ${readFileSync(fenceLog, 'utf8')}`);
      assert.equal(procStart(pid), start, 'the same QEMU runs');
      const rows = (await poolList('host1')).filter((r) => r.name === 'fg');
      assert.deepEqual(rows.map((r) => r.host), ['host2']);
      assert.equal((await localCount('host1', 'fg')) + (await localCount('host3', 'fg')), 0, 'fg started nowhere else');
      assert.equal(await qemuPid('host2', 'fg'), pid, 'the restarted xenod re-adopted it');
      await d2.waitConsole('fg', /heartbeat \d+/, 60_000);
    } finally {
      watch.stop();
    }
  });

  test('kill -9 of xenod for good: the watchdog kills its QEMU before the guest starts elsewhere, once', async () => {
    const d2 = lab.daemon('host2');
    const pid = await qemuPid('host2', 'fg');
    const start = procStart(pid)!;
    const watch = exitWatch(pid, start);
    try {
      await d2.stop('SIGKILL');
      let row: PoolRow | undefined;
      await until('fg running on another host', async () => {
        row = (await poolList('host1').catch(() => [])).find((r) => r.name === 'fg');
        return !!row && row.host !== null && row.host !== 'host2' && row.state !== 'off';
      }, 240_000, 500);
      const target = row!.host!;
      const newPid = await qemuPid(target, 'fg');
      const newStart = Number(procStart(newPid)) / CLK_TCK;
      const exitedAt = watch.gone();
      assert.ok(exitedAt !== undefined, 'the old QEMU on host2 was killed');
      assert.ok(exitedAt < newStart, `old QEMU gone at ${exitedAt} s, new one started at ${newStart} s (since boot)`);
      await lab.daemon(target).waitConsole('fg', /heartbeat \d+/, 180_000);
      // once: exactly one QEMU of fg, on the target
      await sleep(10_000);
      const others = ['host1', 'host3'].filter((h) => h !== target);
      assert.equal(await localCount(others[0]!, 'fg'), 0);
      assert.equal(await localCount(target, 'fg'), 1);
      assert.equal(procStart(pid), undefined, 'the old QEMU stays dead');
      assert.match(readFileSync(path.join(d2.stateDir, 'ha-fence.log'), 'utf8'), /fence: .*xenod gone: SIGKILL/);
    } finally {
      watch.stop();
    }
  });

  test('its host cut off, its xenod alive: its QEMU exits before the guest starts elsewhere, once', async () => {
    const from = (await poolList('host1').catch(() => poolList('host3'))).find((r) => r.name === 'fg')!.host!;
    const other = ['host1', 'host3'].find((h) => h !== from)!;
    const pid = await qemuPid(from, 'fg');
    const start = procStart(pid)!;
    const watch = exitWatch(pid, start);
    const h = lab.host(from);
    try {
      await lab.cut(h);
      let row: PoolRow | undefined;
      await until(`fg running on ${other}`, async () => {
        row = (await poolList(other).catch(() => [])).find((r) => r.name === 'fg');
        return row?.host === other && row.state !== 'off';
      }, 240_000, 500);
      const newPid = await qemuPid(other, 'fg');
      const newStart = Number(procStart(newPid)) / CLK_TCK;
      const exitedAt = watch.gone();
      assert.ok(exitedAt !== undefined, `the QEMU on the cut-off ${from} was killed`);
      assert.ok(exitedAt < newStart, `old QEMU gone at ${exitedAt} s, new one started at ${newStart} s (since boot)`);
      await lab.daemon(other).waitConsole('fg', /heartbeat \d+/, 180_000);
      assert.equal(await localCount(from, 'fg'), 0, 'no QEMU of fg left on the cut-off host');
      assert.equal(await localCount(other, 'fg'), 1, 'one QEMU of fg, on the new host');
      // the fenced host dropped its record of fg with the QEMU (the pool view shows fg once)
      await until(`${from} forgets fg`, async () => (await lab.daemon(from).row('fg')) === undefined, 30_000, 500);

      // back in touch: it starts nothing, and every host's pool view shows fg once, on the new host
      const newProcStart = procStart(newPid)!;
      const assignedFg = () => [from, other].map((x) => lab.daemon(x).log.split('\n').filter((l) => l.includes('assigned fg to')).length);
      const assignedBefore = assignedFg();
      await lab.restore(h);
      await until(`${from} is up again in the pool`, async () => {
        const hosts = JSON.parse(await lab.daemon(other).ok(['host-list', '--json'])) as { hosts: Array<{ name: string; state: string }> };
        return hosts.hosts.find((x) => x.name === from)?.state === 'up';
      }, 120_000, 500);
      await sleep(TTL * 1000);
      // the safety: fg never runs on two hosts at once
      const counts = [await localCount(from, 'fg'), await localCount(other, 'fg')];
      assert.ok(counts[0]! + counts[1]! <= 1, `QEMUs of fg on ${from} and ${other}: ${counts.join(' and ')}`);
      // and nothing moved: the rejoin fenced nothing on the new host (before the etcd members ran with
      // pre-vote, the cut member's raised raft term made the etcd leader step down as it came back:
      // up to ~7 s without a leader for every host, past F for the new host, whose third peer is silent)
      // what each xenod did (for the failure's message)
      const haLines = (await Promise.all([from, other].map(async (x) => `${x}:\n${(await lab.daemon(x).ok(['dmesg']).catch((e: Error) => e.message)).split('\n').filter((l) => /fg|fence|ha /.test(l)).slice(-25).join('\n')}`))).join('\n');
      assert.equal(procStart(newPid), newProcStart, `fg's new QEMU on ${other} still runs after the rejoin\n${haLines}`);
      assert.deepEqual(assignedFg(), assignedBefore, `no host assigned fg again after the rejoin\n${haLines}`);
      for (const x of [from, other]) {
        const rows = (await poolList(x)).filter((r) => r.name === 'fg');
        assert.deepEqual(rows.map((r) => r.host), [other], `${x}'s pool view shows fg once, on ${other}`);
      }
    } finally {
      watch.stop();
      await lab.restore(h).catch(() => undefined);
    }
  });
});
