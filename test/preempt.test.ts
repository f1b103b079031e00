/**
 * destroy preempts the long operations of a domain (a save, vcpu-set's wait for an unplug the
 * guest ignores, network-detach's wait for a guest that does not answer, mem-set's wait for a
 * balloon that cannot get there): each ends cancelled, destroy returns and the guest is gone. And
 * a domain whose lock is held by a long operation never stalls the host: a mem-max queued behind
 * it does not hold up another domain's create. Real xenod, real guests.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ApiError } from '../src/client/client.js';
import { processGone } from '../src/host/proc.js';
import { TestDaemon, sleep } from './helpers/harness.js';

/** How a request ended: its result, or its error's code and message. */
type Outcome<T> = { ok: true; value: T } | { ok: false; code: string; message: string };

function settle<T>(p: Promise<T>): { done: () => boolean; outcome: Promise<Outcome<T>> } {
  let finished = false;
  const outcome = p.then(
    (value) => ({ ok: true as const, value }),
    (e: unknown) => ({ ok: false as const, code: e instanceof ApiError ? e.code : 'ERROR', message: (e as Error).message }),
  ).finally(() => (finished = true));
  return { done: () => finished, outcome };
}

async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

async function gone(d: TestDaemon, name: string, pid: number): Promise<void> {
  assert.equal(await d.row(name), undefined, `${name} is no longer listed`);
  await until(`QEMU ${pid} to exit`, () => processGone(pid), 30_000);
}

describe('destroy during a save', () => {
  // Test-only hook: the save holds once the guest is paused and FILE.partial exists.
  const d = new TestDaemon({ wrap: ['env', 'XENO_TEST_HOLD_SAVE_MS=600000'] });
  before(() => d.start());
  after(() => d.cleanup());

  it('cancels the save: no partial file, destroy returns, the guest is gone', async () => {
    await d.createGuest('sv1');
    await d.waitConsole('sv1', /heartbeat 2\r?\n/);
    const pid = (await d.row('sv1'))!.pid!;
    const file = path.join(d.dir, 'sv1.save');
    const saving = settle(d.client.post('/v1/domains/sv1/save', { file }));
    await until('the save to begin', async () => existsSync(`${file}.partial`) && (await d.row('sv1'))?.state === 'saving');
    const r = await d.xeno(['destroy', 'sv1'], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, `destroy during a save: ${r.stderr}`);
    const s = await saving.outcome;
    assert.equal(s.ok, false, 'the save did not complete');
    assert.match((s as { message: string }).message, /save cancelled: domain sv1 is being destroyed/);
    assert.ok(!existsSync(`${file}.partial`) && !existsSync(file), 'no save file, partial or whole');
    assert.deepEqual(readdirSync(path.join(d.stateDir, 'save-intents')), [], 'no save intent left');
    await gone(d, 'sv1', pid);
    assert.match(await d.ok(['dmesg']), /save of sv1 .* cancelled/);
  });
});

describe('destroy during vcpu-set, mem-set and network-detach waits; lock order', () => {
  const d = new TestDaemon({ isolated: true });
  before(() => d.start());
  after(() => d.cleanup());

  it('a guest ignoring a vcpu unplug and a balloon that does not move: a create is not stalled by a mem-max queued behind it, and destroy cancels both', async () => {
    await d.createGuest('cpu1', { memory: 256, maxmem: 256, vcpus: 2, maxvcpus: 2 });
    await d.waitConsole('cpu1', /xeno-guest: up/);
    const pid = (await d.row('cpu1'))!.pid!;
    // The guest refuses ACPI ejects of processors (Linux: "Eject disabled"), and its balloon driver
    // is unloaded: the balloon never moves.
    const out = await d.guestRun('cpu1', 'echo 0 > /sys/firmware/acpi/hotplug/processor/enabled; cat /sys/firmware/acpi/hotplug/processor/enabled; rmmod virtio_balloon; echo rmmod=$?');
    assert.match(out, /^0$/m, out);
    assert.match(out, /rmmod=0/, out);
    const memSet = settle(d.client.post('/v1/domains/cpu1/mem-set', { memory: 200, timeout: 600 }));
    // mem-set's wait runs outside the lock: once its target is stored, the next operation may go.
    await until('the mem-set target to be stored', async () => (await d.row('cpu1'))?.memory === 200);
    const vcpuSet = settle(d.client.post('/v1/domains/cpu1/vcpu-set', { vcpus: 1, timeout: 600 }));
    await until('the vcpu unplug to be pending', async () => {
      const rows = await d.client.get<{ vcpus: Array<{ vcpu: number; pending?: boolean }> }>('/v1/domains/cpu1/vcpus').catch(() => ({ vcpus: [] }));
      return rows.vcpus.some((v) => v.pending === true);
    });
    // Queued behind vcpu-set's hold on cpu1's lock.
    const memMax = settle(d.client.post('/v1/domains/cpu1/mem-max', { maxmem: 256 }));
    await sleep(1000);
    // Another domain's create must not wait for cpu1.
    await d.createGuest('net1', { vif: "['ip=192.168.100.10']" });
    assert.equal(vcpuSet.done(), false, 'the create completed while vcpu-set still waits for the guest');
    assert.equal(memMax.done(), false, 'and while mem-max still waits for the domain');
    assert.equal(memSet.done(), false, 'and while mem-set still waits for the balloon');

    const r = await d.xeno(['destroy', 'cpu1'], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, `destroy during the unplug wait: ${r.stderr}`);
    const v = await vcpuSet.outcome;
    assert.equal(v.ok, false);
    assert.match((v as { message: string }).message, /vcpu-set cancelled: domain cpu1 is being destroyed/);
    const m = await memSet.outcome;
    assert.ok(m.ok, 'mem-set reports, it does not fail');
    const ms = (m as { value: { reached: boolean; cancelled?: boolean; message?: string } }).value;
    assert.equal(ms.reached, false);
    assert.equal(ms.cancelled, true, ms.message);
    assert.match(ms.message ?? '', /cancelled/);
    // mem-max was queued before the destroy: it runs (briefly) once vcpu-set has let go, or finds the domain gone.
    const mm = await memMax.outcome;
    assert.ok(mm.ok || mm.code === 'NO_SUCH_DOMAIN', JSON.stringify(mm));
    await gone(d, 'cpu1', pid);
  });

  it('destroy cancels a network-detach waiting for a guest that does not answer', async () => {
    if (!(await d.row('net1'))) await d.createGuest('net1', { vif: "['ip=192.168.100.10']" }); // when run alone
    await d.waitConsole('net1', /xeno-guest: up/);
    const pid = (await d.row('net1'))!.pid!;
    // A paused guest cannot answer the PCI unplug request.
    await d.ok(['pause', 'net1']);
    const detach = settle(d.client.post('/v1/domains/net1/network-detach', { vif: 0, timeout: 600 }));
    await sleep(2000);
    assert.equal(detach.done(), false, 'network-detach waits for the guest');
    const r = await d.xeno(['destroy', 'net1'], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, `destroy during network-detach: ${r.stderr}`);
    const o = await detach.outcome;
    assert.equal(o.ok, false);
    assert.match((o as { message: string }).message, /network-detach cancelled: domain net1 is being destroyed/);
    await gone(d, 'net1', pid);
    const list = await d.client.get<{ vifs: unknown[] }>('/v1/domains/net1/network').catch((e: ApiError) => e);
    assert.ok(list instanceof ApiError && list.code === 'NO_SUCH_DOMAIN');
  });
});
