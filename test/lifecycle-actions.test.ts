/**
 * The lifecycle actions xl has beyond destroy/restart/preserve, on real crashes and poweroffs:
 * coredump-restart / coredump-destroy dump the guest's memory (an ELF core) under the state dir's
 * dump/ directory first; rename-restart keeps the stopped domain, frozen, as NAME--incarnation-ID
 * and starts a new NAME.
 */
import assert from 'node:assert/strict';
import { closeSync, openSync, readdirSync, readSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { processGone } from '../src/host/proc.js';
import { TestDaemon, sleep } from './helpers/harness.js';

describe('coredump-* and rename-restart lifecycle actions', () => {
  const d = new TestDaemon();
  before(() => d.start());
  after(() => d.cleanup());
  const dumps = () => {
    try {
      return readdirSync(path.join(d.stateDir, 'dump')).sort();
    } catch {
      return [];
    }
  };
  /** An ELF core of the guest's whole memory, holding the kernel's banner. */
  const assertCore = (file: string) => {
    const head = Buffer.alloc(4);
    const fd = openSync(file, 'r');
    readSync(fd, head, 0, 4, 0);
    closeSync(fd);
    assert.deepEqual([...head], [0x7f, 0x45, 0x4c, 0x46], 'an ELF file');
    assert.ok(statSync(file).size >= 128 * 1024 * 1024, `all 128 MiB of guest memory: ${statSync(file).size} bytes`);
    assert.ok(readFileSync(file).includes('Linux version 6.'), 'the guest kernel is in it');
  };
  let id = 0;

  it('on_crash=coredump-restart dumps the memory, then restarts the guest with its id', async () => {
    id = await d.createGuest('cd1', { on_crash: 'coredump-restart', on_poweroff: 'coredump-destroy' });
    await d.waitConsole('cd1', /xeno# /, 120_000);
    const from = d.consoleLog('cd1').length;
    const s = await d.client.upgrade('/v1/domains/cd1/console', 'xeno-console');
    s.write('echo c > /proc/sysrq-trigger\n');
    s.destroy();
    await d.waitConsole('cd1', /xeno-guest: up/, 180_000, from);
    const files = dumps();
    assert.equal(files.length, 1, files.join(','));
    assert.match(files[0]!, new RegExp(`^cd1-${id}-.*\\.core$`));
    assertCore(path.join(d.stateDir, 'dump', files[0]!));
    assert.equal((await d.row('cd1'))!.id, id, 'restarted in place');
    const events = await d.ok(['dmesg']);
    assert.match(events, /cd1\(\d+\) crash: guest crashed: on_crash=coredump-restart/);
    assert.match(events, new RegExp(`cd1\\(${id}\\) coredump: cd1: memory dumped to .*${files[0]!.replace(/\./g, '\\.')}`));
    assert.match(events, /cd1\(\d+\) restart: cd1 restarted/);
  });

  it('on_poweroff=coredump-destroy dumps the memory, then destroys the guest', async () => {
    await d.waitConsole('cd1', /xeno# /, 120_000, d.consoleLog('cd1').lastIndexOf('xeno-guest: up'));
    await d.ok(['shutdown', '-w', 'cd1']);
    for (let i = 0; i < 100 && dumps().length < 2; i++) await sleep(100);
    const files = dumps();
    assert.equal(files.length, 2, files.join(','));
    assertCore(path.join(d.stateDir, 'dump', files[1]!));
    assert.equal(await d.row('cd1'), undefined, 'destroyed after the dump');
    assert.match(await d.ok(['dmesg']), /cd1\(\d+\) poweroff: guest powered off: on_poweroff=coredump-destroy/);
  });
  it('on_crash=rename-restart keeps the crashed domain, frozen, as NAME--incarnation-ID and starts a new NAME', async () => {
    const oldId = await d.createGuest('rr', { on_crash: 'rename-restart' });
    await d.waitConsole('rr', /xeno# /, 120_000);
    const oldPid = (await d.row('rr'))!.pid!;
    const from = d.consoleLog('rr').length;
    const s = await d.client.upgrade('/v1/domains/rr/console', 'xeno-console');
    s.write('echo c > /proc/sysrq-trigger\n');
    s.destroy();
    await d.waitConsole('rr', /xeno-guest: up/, 180_000, from);
    const kept = await d.row(`rr--incarnation-${oldId}`);
    assert.ok(kept, `the old domain is kept: ${(await d.rows()).map((r) => r.name).join(',')}`);
    assert.equal(kept.id, oldId);
    assert.equal(kept.state, 'crashed');
    assert.equal(kept.pid, oldPid, 'the same QEMU, frozen: its memory is there for a post-mortem');
    assert.equal(processGone(oldPid), false);
    assert.match(await d.ok(['list', `rr--incarnation-${oldId}`]), /----c-/);
    const fresh = (await d.row('rr'))!;
    assert.ok(fresh.id > oldId, `a new domain: ${fresh.id}`);
    assert.notEqual(fresh.pid, oldPid);
    assert.equal(fresh.state, 'running');
    assert.match(await d.ok(['dmesg']), new RegExp(`rr--incarnation-${oldId}\\(${oldId}\\) rename: rr \\(${oldId}\\) kept as rr--incarnation-${oldId}`));
    await d.ok(['destroy', `rr--incarnation-${oldId}`]);
    assert.equal(processGone(oldPid), true);
    assert.equal((await d.row('rr'))!.state, 'running', 'the new one runs on');
    await d.ok(['destroy', 'rr']);
  });
});
