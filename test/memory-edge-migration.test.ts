/**
 * An incoming migration meets the target host's memory edge just as create, restore and mem-max do:
 * the target's dom0-min-mem leaves room for exactly one 128 MiB guest and it already runs one, so a
 * migration to it is refused (NO_MEMORY, the guest keeps running on the source, nothing is left on
 * the target); once the target's guest is destroyed the same migration goes through. Two real
 * xenods in network namespaces of their own (relocation-lab), the shared relocation key.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { HostInfo } from '../src/model/api.js';
import { processGone } from '../src/host/proc.js';
import { TestDaemon, measureGuestCharge } from './helpers/harness.js';
import { B, RelocationLab } from './helpers/relocation-lab.js';

const info = (d: TestDaemon) => d.client.get<HostInfo>('/v1/host');

function runDirs(d: TestDaemon): string[] {
  try {
    return readdirSync(path.join(d.stateDir, 'run'));
  } catch {
    return [];
  }
}

/** The last complete heartbeat line in a console log (a line still being written is ignored). */
function lastBeat(d: TestDaemon, name: string): number {
  const all = [...d.consoleLog(name).matchAll(/heartbeat (\d+)\r?\n/g)];
  return all.length ? Number(all[all.length - 1]![1]) : 0;
}

describe('memory accounting at its edge: an incoming migration to a full host', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'xeno-memedge-'));
  const lab = new RelocationLab(dir);
  let charge = 0;
  let src: TestDaemon;
  let dst: TestDaemon;

  before(async () => {
    let total = 0;
    ({ charge, total } = await measureGuestCharge());
    assert.ok(charge > 128, `a guest costs its maxmem and QEMU's overhead: ${charge} MiB`);
    await lab.setup();
    src = await lab.daemon(lab.nsA);
    // exactly one guest fits on the target, with half a guest to spare
    dst = await lab.daemon(lab.nsB, [`(dom0-min-mem ${total - charge - Math.floor(charge / 2)})`]);
  });
  after(async () => {
    await lab.teardown();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses the migration while the target is full, and admits it once there is room', async () => {
    assert.equal((await info(dst)).free_memory, charge + Math.floor(charge / 2));
    await dst.createGuest('full');
    assert.equal((await info(dst)).free_memory, Math.floor(charge / 2), 'the target is full');
    const before = (await dst.rows()).map((r) => r.name).sort();
    const dirsBefore = runDirs(dst);

    await src.createGuest('mm');
    await src.waitConsole('mm', /heartbeat 2\r?\n/, 120_000);
    const pid = (await src.row('mm'))!.pid!;

    const r = await src.xeno(['migrate', 'mm', B, '-l']);
    assert.notEqual(r.code, 0, `expected a refusal, got: ${r.stdout}`);
    assert.match(r.stderr, new RegExp(`not enough free host memory to create mm: needs ${charge} MiB, ${Math.floor(charge / 2)} MiB free`));

    const still = (await src.row('mm'))!;
    assert.equal(still.state, 'running', 'still running on the source');
    assert.equal(still.pid, pid, 'the same QEMU');
    assert.ok(!processGone(pid), 'its QEMU is alive');
    const at = lastBeat(src, 'mm');
    await src.waitConsole('mm', new RegExp(`heartbeat ${at + 2}\\r?\\n`), 120_000, src.consoleLog('mm').length);
    assert.deepEqual((await dst.rows()).map((x) => x.name).sort(), before, 'no domain made on the target');
    assert.deepEqual(runDirs(dst), dirsBefore, 'no run dir left on the target');
    assert.equal((await info(dst)).free_memory, Math.floor(charge / 2), 'the target charges nothing for it');

    await dst.ok(['destroy', 'full']);
    await src.ok(['migrate', 'mm', B, '-l']);
    // the guest ran on the source until the switch: the target goes on past its last beat there
    const last = lastBeat(src, 'mm');
    assert.equal(await src.row('mm'), undefined, 'the guest left the source');
    assert.ok(processGone(pid), "the source's QEMU has exited");
    const there = (await dst.row('mm'))!;
    assert.equal(there.state, 'running');
    await dst.waitConsole('mm', new RegExp(`heartbeat ${last + 2}\\r?\\n`), 120_000);
    assert.equal((await info(dst)).free_memory, Math.floor(charge / 2), 'the target now charges it');
  });
});
