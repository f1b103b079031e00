/**
 * Managed guests on a real xenod and real guests: xeno new / start / delete, list --all (state off),
 * keeping a guest started with create, and autostart when xenod starts after a boot (definitions
 * with autostart = 1 and configs linked in the auto dir, in autostart_order, with autostart_delay).
 * A boot is simulated the way a reboot does it: the /run marker next to the socket is gone.
 */
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { autostartMarker } from '../src/toolstack/autostart.js';
import { TestDaemon, guestCfg, sleep } from './helpers/harness.js';

interface Row {
  name: string;
  id: number | null;
  state: string;
}

interface Ev {
  ts: number;
  kind: string;
  message: string;
}

async function waitRow(d: TestDaemon, name: string, want: (r: Row | undefined) => boolean): Promise<Row | undefined> {
  for (let i = 0; i < 600; i++) {
    const rows = JSON.parse(await d.ok(['list', '--all', '--json'])) as Row[];
    const r = rows.find((x) => x.name === name);
    if (want(r)) return r;
    await sleep(100);
  }
  throw new Error(`${name} never reached the expected state`);
}

describe('managed guests: new, start, delete, list --all, autostart', () => {
  const autoDir = path.join('/tmp', `xeno-auto-${process.pid}`);
  const d = new TestDaemon({ configText: `(xeno-auto-dir ${autoDir})\n` });

  before(async () => {
    mkdirSync(autoDir, { recursive: true });
    await d.start();
  });
  after(async () => {
    await d.cleanup();
    rmSync(autoDir, { recursive: true, force: true });
  });

  it('new defines without starting; start starts; delete is refused while it runs, then forgets', async () => {
    const cfg = d.writeCfg('m1', guestCfg('m1'));
    assert.match(await d.ok(['new', cfg]), /Defined domain m1/);
    let off = await waitRow(d, 'm1', (r) => !!r);
    assert.equal(off!.state, 'off');
    assert.equal(off!.id, null);
    assert.equal(await d.row('m1'), undefined, 'list without --all shows what runs only');
    assert.match(await d.ok(['list', '--all']), /^m1\s+-\s+128\s+1\s+off\s+0\.0$/m);

    assert.match(await d.ok(['start', 'm1']), /Started domain m1 \(id=\d+\)/);
    await d.waitConsole('m1', /heartbeat 2\r?\n/);
    const del = await d.xeno(['delete', 'm1']);
    assert.equal(del.code, 1);
    assert.match(del.stderr, /cannot delete m1: it runs as domain \d+/);
    const again = await d.xeno(['start', 'm1']);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /m1 already runs/);

    await d.ok(['shutdown', '-w', 'm1']);
    off = await waitRow(d, 'm1', (r) => r?.state === 'off');
    await d.ok(['delete', 'm1']);
    await waitRow(d, 'm1', (r) => r === undefined);
    const gone = await d.xeno(['start', 'm1']);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /no guest named 'm1' is defined/);
  });

  it('keeps a guest started with create (xeno new NAME), with the same uuid, from its running config', async () => {
    await d.createGuest('m2');
    await d.ok(['mem-set', 'm2', '100']);
    const uuid = (await d.client.get<{ uuid: string }>('/v1/domains/m2')).uuid;
    const def = JSON.parse(await d.ok(['new', 'm2', '--json'])) as { name: string; config: { uuid: string; memory: number } };
    assert.equal(def.config.uuid, uuid);
    assert.equal(def.config.memory, 100, 'the running config, runtime changes included');
    await d.ok(['destroy', 'm2']);
    await waitRow(d, 'm2', (r) => r?.state === 'off');
    await d.ok(['start', 'm2']);
    assert.equal((await d.client.get<{ uuid: string }>('/v1/domains/m2')).uuid, uuid);
    await d.ok(['destroy', 'm2']);
    await d.ok(['delete', 'm2']);
  });

  it('refuses bad definitions and leaves nothing', async () => {
    const bad = d.writeCfg('bad', guestCfg('bad', { autostart: 7 }));
    const r = await d.xeno(['new', bad]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /key "autostart" expects a whole number between 0 and 1/);
    const nofile = d.writeCfg('nf', guestCfg('nf').replace(/kernel = ".*"/, 'kernel = "/nonexistent/vmlinuz"'));
    assert.match((await d.xeno(['new', nofile])).stderr, /kernel: \/nonexistent\/vmlinuz does not exist/);
    const rows = JSON.parse(await d.ok(['list', '--all', '--json'])) as Row[];
    assert.deepEqual(rows.filter((x) => x.name === 'bad' || x.name === 'nf'), []);
  });

  it('autostarts at the first start after a boot, in autostart_order, with the delay, then not again', async () => {
    // a2 (order 1, delay 3) first, then the linked a3 (order 2), then a1 (order 5); a4 is not autostarted.
    await d.ok(['new', d.writeCfg('a1', guestCfg('a1', { autostart: 1, autostart_order: 5 }))]);
    await d.ok(['new', d.writeCfg('a2', guestCfg('a2', { autostart: 1, autostart_order: 1, autostart_delay: 3 }))]);
    await d.ok(['new', d.writeCfg('a4', guestCfg('a4'))]);
    const a3 = path.join(d.dir, 'a3-real.cfg');
    writeFileSync(a3, guestCfg('a3', { autostart_order: 2 }));
    symlinkSync(a3, path.join(autoDir, 'a3.cfg'));

    await d.stop();
    rmSync(autostartMarker(d.socket), { force: true }); // what a reboot does to /run
    await d.start();
    for (const n of ['a1', 'a2', 'a3']) await waitRow(d, n, (r) => r?.state === 'running');
    for (const n of ['a1', 'a2', 'a3']) await d.waitConsole(n, /heartbeat 1\r?\n/, 120_000);
    assert.equal((await waitRow(d, 'a4', (r) => !!r))!.state, 'off', 'no autostart: stays off');
    const evs = (JSON.parse(await d.ok(['dmesg', '--json'])) as Ev[]).filter((e) => e.kind === 'autostart');
    assert.deepEqual(evs.map((e) => e.message.split(' ')[0]), ['a2', 'a3', 'a1']);
    assert.match(evs[1]!.message, /from .*a3\.cfg/);
    assert.ok(evs[1]!.ts - evs[0]!.ts >= 3, `a3 started after a2's autostart_delay of 3 s (${evs[1]!.ts - evs[0]!.ts} s)`);

    // xenod restarted within the same boot: an admin's shut-down guest stays down.
    await d.ok(['destroy', 'a1']);
    await d.stop();
    await d.start();
    await sleep(2000);
    assert.equal((await waitRow(d, 'a1', (r) => !!r))!.state, 'off');
    for (const n of ['a2', 'a3']) await d.ok(['destroy', n]);
  });
});
