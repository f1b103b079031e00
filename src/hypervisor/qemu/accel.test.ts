/**
 * The accelerator choice: the decision rules, the KVM probe's boot sector run for real under TCG
 * (it must print 'K' and exit QEMU with status 33), the probe's time bound, and its per-boot cache.
 */
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { decideAccel, detectAccel, probeGuest, probeImage, probeKvm } from './accel.js';

const QEMU = 'qemu-system-x86_64';

/** A boot sector running `code` (real mode), padded and signed. */
function sector(code: number[]): Buffer {
  const img = Buffer.alloc(512);
  Buffer.from(code).copy(img);
  img[510] = 0x55;
  img[511] = 0xaa;
  return img;
}
const OUT_K = [0xba, 0xf8, 0x03, 0xb0, 0x4b, 0xee]; // mov dx,0x3f8; mov al,'K'; out dx,al
const exitWith = (v: number) => [0xba, 0xf4, 0x00, 0xb0, v, 0xee]; // mov dx,0xf4; mov al,v; out dx,al
const HANG = [0xeb, 0xfe]; // jmp $

describe('accelerator decision', () => {
  const yes = { ok: true, detail: 'probe exited 33' };
  it('follows the daemon config, then the CPU flags, /dev/kvm and the probe', () => {
    assert.deepEqual(decideAccel('tcg', { cpuFlags: ['vmx'], kvmDeviceUsable: true, probe: yes }).accel, 'tcg');
    assert.equal(decideAccel('kvm', { cpuFlags: [], kvmDeviceUsable: false }).accel, 'kvm');
    assert.match(decideAccel('auto', { cpuFlags: ['sse2'], kvmDeviceUsable: true, probe: yes }).reason, /no vmx\/svm flag: falling back to TCG/);
    assert.match(decideAccel('auto', { cpuFlags: ['svm'], kvmDeviceUsable: false }).reason, /CPU has svm but \/dev\/kvm cannot be opened/);
    const hung = decideAccel('auto', { cpuFlags: ['vmx'], kvmDeviceUsable: true, probe: { ok: false, detail: 'no answer within 4000 ms' } });
    assert.equal(hung.accel, 'tcg');
    assert.match(hung.reason, /probe guest failed under KVM \(no answer within 4000 ms\): falling back to TCG/);
    assert.deepEqual(decideAccel('auto', { cpuFlags: ['vmx'], kvmDeviceUsable: true, probe: yes }), { accel: 'kvm', reason: 'KVM (vmx) works: probe guest booted and exited' });
  });
});

describe('the KVM probe, run under TCG with a real QEMU', () => {
  it('its boot sector prints K and exits QEMU with status 33', async () => {
    assert.deepEqual(await probeGuest(QEMU, { accel: 'tcg', timeoutMs: 120_000 }), { ok: true, detail: 'probe exited 33' });
  });

  it('reads the exit status: another status, or no K on the serial line, is a failure', async () => {
    const other = await probeGuest(QEMU, { accel: 'tcg', timeoutMs: 120_000, image: sector([...OUT_K, ...exitWith(0x11), 0xf4]) });
    assert.deepEqual(other, { ok: false, detail: 'exit 35: K' }, '(0x11 << 1) | 1 = 35');
    const silent = await probeGuest(QEMU, { accel: 'tcg', timeoutMs: 120_000, image: sector([...exitWith(0x10), 0xf4]) });
    assert.equal(silent.ok, false, 'status 33 without the K is not a boot');
    assert.match(silent.detail, /^exit 33/);
    assert.equal(probeImage().subarray(0, 12).equals(Buffer.from([...OUT_K, ...exitWith(0x10)])), true, 'the probe is that sector');
  });

  it('gives up on a probe guest that never exits, at the bound', async () => {
    const r = await probeGuest(QEMU, { accel: 'tcg', timeoutMs: 4000, image: sector(HANG) });
    assert.deepEqual(r, { ok: false, detail: 'no answer within 4000 ms' });
  });

  it('bounds the KVM probe at 4 s by default (a QEMU that never answers)', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'xeno-accel-'));
    try {
      const fake = path.join(dir, 'qemu-never');
      writeFileSync(fake, '#!/bin/sh\nexec sleep 600\n');
      chmodSync(fake, 0o755);
      assert.deepEqual(await probeKvm(fake), { ok: false, detail: 'no answer within 4000 ms' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the probe result is cached per boot', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'xeno-accel-cache-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  let probes = 0;
  const host = {
    cpuFlags: ['vmx'],
    kvmDeviceUsable: true,
    probe: async () => {
      probes++;
      return { ok: false, detail: `hung #${probes}` };
    },
  };

  it('probes once, then answers from the cache for the same boot and QEMU binary', async () => {
    const first = await detectAccel('auto', '/usr/bin/qemu-a', dir, host);
    assert.equal(probes, 1);
    assert.match(first.reason, /hung #1/);
    const file = path.join(dir, 'kvm-probe.json');
    assert.ok(existsSync(file));
    assert.equal((JSON.parse(readFileSync(file, 'utf8')) as { bootId: string }).bootId, bootId);
    const second = await detectAccel('auto', '/usr/bin/qemu-a', dir, host);
    assert.equal(probes, 1, 'no second probe in the same boot');
    assert.deepEqual(second, first);
  });

  it('probes again for another QEMU binary or another boot, and never for a forced choice', async () => {
    await detectAccel('auto', '/usr/bin/qemu-b', dir, host);
    assert.equal(probes, 2, 'another binary');
    const file = path.join(dir, 'kvm-probe.json');
    writeFileSync(file, JSON.stringify({ bootId: 'an-earlier-boot', binary: '/usr/bin/qemu-b', probe: { ok: true, detail: 'stale' } }));
    const r = await detectAccel('auto', '/usr/bin/qemu-b', dir, host);
    assert.equal(probes, 3, 'a cache of an earlier boot is ignored');
    assert.match(r.reason, /hung #3/);
    await detectAccel('tcg', '/usr/bin/qemu-c', dir, host);
    await detectAccel('kvm', '/usr/bin/qemu-c', dir, host);
    assert.equal(probes, 3);
  });
});
