/**
 * Pool HA on the pool lab (three hosts in network namespaces, a 3-member etcd, a xenod each, real
 * guests), in one lab and with the same guests throughout:
 *   - host-evacuate of a host with three guests: all run elsewhere, their heartbeats continuous;
 *   - the HA guest's host loses its etcd member (SIGKILL), then etcd's leader is moved
 *     (move-leader), then every etcd member is stopped for 30 s and started again: no guest moves,
 *     stops or restarts (same host, domain id and QEMU process, heartbeats going on, no fence or
 *     HA restart logged, every host logged that it held);
 *   - a host killed outright (every process in its namespace) right after its HA guest migrated
 *     in (the target claimed its ha/ entry at the commit; then, as if that claim had been lost, the
 *     entry names the source again): the guest runs again on another host, exactly once, its
 *     heartbeat back; a guest on a surviving host is untouched.
 * (The isolation proof, QEMU exit before the new start, is test/pool-ha-fence.test.ts.)
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { poolPrefix } from '../src/pool/etcd.js';
import { procStart } from '../src/pool/ha/fence-watchdog.js';
import { HA_PREFIX, type HaEntry } from '../src/pool/ha/restart.js';
import { GUEST, guestCfg, sleep } from './helpers/harness.js';
import { PoolLab, type LabHost } from './helpers/pool-lab.js';
import { labEtcdctl, moveLeader, waitEtcdWritable } from './helpers/pool-lab-etcd.js';
import { until } from './helpers/relocation-lab.js';

interface PoolRow {
  name: string;
  host: string | null;
  state: string;
  id?: number;
}

// 15 s (fence 9 s), as the agent-level etcd-fault tests: at the default 10 s a CI host loaded by five
// TCG guests, three etcd members and three xenods on 2 cores lost hag once after etcd came back (the
// rule is the same at any TTL; bench/ha.ts measures the default's timing)
const TTL = 15;

describe('pool HA: host-evacuate, etcd faults, and a host killed outright', { timeout: 1_200_000 }, () => {
  let lab: PoolLab;

  before(async () => {
    lab = await PoolLab.up({ config: [`(xeno-pool-lease-ttl ${TTL})`] });
  });
  after(async () => {
    await lab?.down();
  });

  const poolList = async (host: string) => JSON.parse(await lab.daemon(host).ok(['list', '--pool', '--json'])) as PoolRow[];

  test('host-evacuate of a host with three guests: all run elsewhere, heartbeats continuous', async () => {
    const d1 = lab.daemon('host1');
    const d3 = lab.daemon('host3');
    const names = ['ev1', 'ev2', 'ev3'];
    for (const n of names) {
      await d1.ok(['new', d1.writeCfg(n, guestCfg(n))]);
      await d1.ok(['start', n, '--on', 'host3']);
    }
    for (const n of names) await d3.waitConsole(n, /heartbeat \d+/, 180_000);
    const before = Object.fromEntries(names.map((n) => [n, d3.lastHeartbeat(n)]));
    const r = JSON.parse(await d1.ok(['host-evacuate', 'host3', '--parallel', '3', '--json'])) as { moved: Array<{ name: string; to: string }>; stuck: unknown[] };
    assert.deepEqual(r.stuck, []);
    assert.deepEqual(r.moved.map((m) => m.name).sort(), names);
    const rows = await poolList('host1');
    for (const m of r.moved) {
      assert.notEqual(m.to, 'host3');
      assert.equal(rows.find((x) => x.name === m.name)?.host, m.to);
      const target = lab.daemon(m.to);
      // the counter goes on from where it was on host3 (no reboot), and keeps going there
      await until(`${m.name} beats on ${m.to}`, () => target.lastHeartbeat(m.name) > before[m.name]!, 120_000, 500);
      const seen = target.lastHeartbeat(m.name);
      await until(`${m.name} keeps beating`, () => target.lastHeartbeat(m.name) > seen, 60_000, 500);
    }
    const left = JSON.parse(await d3.ok(['list', '--json'])) as Array<{ name: string }>;
    assert.deepEqual(left.filter((d) => d.name !== 'Domain-0').map((d) => d.name), []);
  });

  /** Each guest's host, domain id and QEMU (pid + start time), and its heartbeat counter. */
  const snapshot = async () => {
    const rows = (await poolList('host1')).filter((r) => r.host !== null);
    return Promise.all(rows.map(async (r) => {
      const pid = (await lab.daemon(r.host!).row(r.name))?.pid;
      return { name: r.name, host: r.host, id: r.id, pid, start: pid ? procStart(pid) : undefined, beat: lab.daemon(r.host!).lastHeartbeat(r.name) };
    }));
  };
  /** What the xenods and fence watchdogs logged since `marks` (log lengths). */
  const logMarks = () => lab.hosts.map((h) => h.daemon!.log.length);
  const newLog = (marks: number[]) => lab.hosts.map((h, i) => h.daemon!.log.slice(marks[i]) + fenceLog(h.daemon!.stateDir));
  const fenceLog = (dir: string) => (existsSync(path.join(dir, 'ha-fence.log')) ? readFileSync(path.join(dir, 'ha-fence.log'), 'utf8').split('\n').filter((l) => / fence: /.test(l)).join('\n') : '');
  const FAULTS = /fence \(|fence: |assigned |starting \w+ \(assigned|exited unexpectedly|restarted/;

  /** The HA lines of every host's log since `marks` (a failure's evidence). */
  const haLines = (marks: number[]) =>
    newLog(marks)
      .map((text, i) => `--- ${lab.hosts[i]!.name}\n` + text.split('\n').filter((l) => /fence|hold|lease|renew|etcd|assigned|restart|exited|hag\b|ha:/.test(l)).slice(-40).join('\n'))
      .join('\n');
  /** No guest moved, stopped or restarted since `before`, each keeps beating; no HA action was logged. */
  const untouched = async (before: Awaited<ReturnType<typeof snapshot>>, marks: number[], when: string) => {
    for (const g of before) {
      assert.ok(g.pid && g.start, `${g.name} had a QEMU`);
      // on failure, what each host logged meanwhile (its fence line says why)
      if (procStart(g.pid) !== g.start) assert.fail(`${when}: ${g.name}'s QEMU (pid ${g.pid}) is gone; the hosts logged:\n${haLines(marks)}`);
    }
    const now = await snapshot();
    assert.deepEqual(now.map(({ name, host, id, pid }) => ({ name, host, id, pid })), before.map(({ name, host, id, pid }) => ({ name, host, id, pid })), `${when}: the pool view is unchanged`);
    for (const g of before) await until(`${when}: ${g.name} beats on`, () => lab.daemon(g.host!).lastHeartbeat(g.name) > g.beat, 60_000, 500);
    newLog(marks).forEach((text, i) => assert.doesNotMatch(text, FAULTS, `${when}: ${lab.hosts[i]!.name} logged an HA action\n${haLines(marks)}`));
  };

  test('one etcd member killed and a forced leader change, then every member stopped for 30 s: no guest moves, stops or restarts', async () => {
    // the HA guest (with a writable disk: a disk lock) and a plain one; the evacuated guests run on too
    const d1 = lab.daemon('host1');
    const img = path.join(lab.images, 'hag.ext4');
    copyFileSync(GUEST.disk, img);
    const cfg = d1.writeCfg('hag', guestCfg('hag', { ha: 1, ha_restart_priority: 5 }) + `disk = [ 'format=raw, vdev=xvda, access=rw, target=${img}' ]\n`);
    await d1.ok(['new', cfg]);
    await d1.ok(['start', 'hag', '--on', 'host2']);
    await d1.ok(['new', d1.writeCfg('plain', guestCfg('plain'))]);
    await d1.ok(['start', 'plain', '--on', 'host3']);
    await lab.daemon('host2').waitConsole('hag', /heartbeat \d+/, 180_000);
    await lab.daemon('host3').waitConsole('plain', /heartbeat \d+/, 180_000);
    const before = await snapshot();
    assert.deepEqual(before.map((g) => g.name).sort(), ['ev1', 'ev2', 'ev3', 'hag', 'plain']);
    let marks = logMarks();

    // the HA guest's own host loses its etcd member (SIGKILL), then the leader moves between the others
    const [h1, h2, h3] = lab.hosts as [LabHost, LabHost, LabHost];
    await lab.stopEtcd(h2);
    const [from, to] = await moveLeader(lab, [h1, h3]);
    assert.notEqual(from, to);
    await sleep((TTL + 2) * 1000); // past the fence time and the lease TTL: a fence or a restart shows by now
    await untouched(before, marks, 'one member down, leader moved');

    // etcd down for everyone: 30 s with no member at all (2 lease TTLs)
    marks = logMarks();
    for (const h of [h1, h3]) await lab.stopEtcd(h);
    await sleep(30_000);
    for (const h of lab.hosts) assert.match(h.daemon!.log.slice(marks[lab.hosts.indexOf(h)]), /hold: /, `${h.name} held (etcd out for everyone)`);
    for (const h of lab.hosts) lab.startEtcd(h);
    await waitEtcdWritable(lab, lab.hosts);
    await sleep((TTL + 2) * 1000);
    await untouched(before, marks, 'etcd back after 30 s');
  });

  test('its HA guest, just migrated in, runs again on another host, once, with its heartbeat; the other hosts fence nothing, the other guest is untouched', async () => {
    const plainBefore = (await poolList('host1')).find((r) => r.name === 'plain')!;
    assert.equal(plainBefore.host, 'host3');
    assert.equal((await poolList('host1')).find((r) => r.name === 'hag')?.host, 'host2');

    // the hardest case: the lost host's etcd member leads, so etcd is also without a leader until
    // the others elect one, and every survivor's renewals wait for it meanwhile
    await moveLeader(lab, lab.hosts, lab.host('host1'));
    // and hag has only just arrived there: killed at once after its live migration, before any
    // periodic sync of host1 (every 2 s), hag's ha/ entry must already name host1 (it named host2,
    // alive, whose sync then took hag for migrated away and deleted the entry: never restarted)
    assert.match(await lab.daemon('host2').ok(['migrate', 'hag', 'host1', '--live']), /Migrated domain hag to 10\.197\.0\.1:8002/);
    const haKey = `${poolPrefix(lab.pool)}${HA_PREFIX}hag`;
    const [h1, h2, h3] = lab.hosts as [LabHost, LabHost, LabHost];
    const entry = JSON.parse(await labEtcdctl(lab, h2, lab.hosts, ['get', haKey, '--print-value-only'])) as HaEntry;
    assert.equal(entry.host, 'host1', 'the target claimed ha/hag at the commit');
    const marks = logMarks();
    await lab.killHost(h1);
    // and as if that claim had been lost (the target's commit hook is bounded: on a slow etcd the
    // source is told ok without it): ha/hag names the source again, alive; the source hands it to
    // where running/ says hag runs, or the host's death would restart nothing
    await waitEtcdWritable(lab, [h2, h3]);
    await labEtcdctl(lab, h2, [h2, h3], ['put', haKey, JSON.stringify({ ...entry, host: 'host2', epoch: entry.epoch + 1 })]);
    let row: PoolRow | undefined;
    await until('hag running on another host', async () => {
      row = (await poolList('host2').catch(() => [])).find((r) => r.name === 'hag');
      return !!row && row.host !== null && row.host !== 'host1' && row.state !== 'off';
    }, 180_000, 500).catch((e: Error) => assert.fail(`${e.message} (last row ${JSON.stringify(row)}); the hosts logged:\n${haLines(marks)}`));
    const target = row!.host!;
    await lab.daemon(target).waitConsole('hag', /heartbeat \d+/, 180_000);

    // once: it runs on exactly one host, and stays so
    await new Promise((r) => setTimeout(r, 15_000));
    const rows = (await poolList('host2')).filter((r) => r.name === 'hag');
    assert.equal(rows.length, 1, JSON.stringify(rows));
    assert.equal(rows[0]!.host, target);
    const locals = await Promise.all(['host2', 'host3'].map(async (h) => (JSON.parse(await lab.daemon(h).ok(['list', '--json'])) as Array<{ name: string }>).filter((d) => d.name === 'hag').length));
    assert.deepEqual(locals.reduce((a, b) => a + b, 0), 1, `hag on host2/host3: ${locals.join('/')}`);
    const plainAfter = (await poolList('host2')).find((r) => r.name === 'plain')!;
    assert.deepEqual([plainAfter.host, plainAfter.id], [plainBefore.host, plainBefore.id], 'plain untouched');
    for (const h of ['host2', 'host3']) {
      const i = lab.hosts.indexOf(lab.host(h));
      assert.doesNotMatch(newLog(marks)[i]!, /fence \(|fence: /, `${h} fenced while etcd elected a new leader:\n${haLines(marks)}`);
    }
  });
});
