/** A pool guest's levelled CPU model reaches QEMU's command line under KVM (never -cpu host), not under TCG. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildQemuArgv } from '../hypervisor/qemu/argv.js';
import type { DomainConfig } from '../model/domain-config.js';

const config: DomainConfig = {
  name: 'web', type: 'pv', memory: 128, maxmem: 256, vcpus: 2, maxvcpus: 2, kernel: '/k', ramdisk: '/r',
  disks: [], vifs: [], onPoweroff: 'destroy', onReboot: 'restart', onCrash: 'destroy', cpuModel: 'Haswell-noTSX',
};
const paths = { qmp: '/q', serial: '/s', hvc: '/h', qga: '/g', pidfile: '/p' };
const opt = (argv: string[], flag: string) => argv.flatMap((a, i) => (a === flag ? [argv[i + 1]!] : []));

test('the pool model under KVM, for the boot cpu and the hot-pluggable ones', () => {
  const argv = buildQemuArgv({ domid: 1, config, uuid: 'u', machineType: 'pc-i440fx-7.2', accel: 'kvm', paths, nics: [] });
  assert.deepEqual(opt(argv, '-cpu'), ['Haswell-noTSX']);
  assert.ok(opt(argv, '-device').includes('Haswell-noTSX-x86_64-cpu,id=vcpu1,socket-id=0,core-id=1,thread-id=0'));
});

test('under TCG the model is qemu64 whatever the config says; a model name cannot smuggle options', () => {
  assert.deepEqual(opt(buildQemuArgv({ domid: 1, config, uuid: 'u', machineType: 'm', accel: 'tcg', paths, nics: [] }), '-cpu'), ['qemu64']);
  assert.throws(() => buildQemuArgv({ domid: 1, config: { ...config, cpuModel: 'host,+vmx' }, uuid: 'u', machineType: 'm', accel: 'kvm', paths, nics: [] }), /cannot go into a QEMU option string/);
});
