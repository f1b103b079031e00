import assert from 'node:assert/strict';
import { test } from 'node:test';
import { toDomainConfig } from './domain-config.js';
import { validateDomainConfig } from './validate.js';
import { formatXlCfg } from './xlcfg-format.js';
import { parseXlCfg } from './xlcfg-parser.js';

const DISK = "disk = ['format=qcow2,vdev=xvda,access=rw,target=/srv/web.qcow2']\n";
const parse = (text: string, warns: string[] = []) => toDomainConfig(parseXlCfg(text, 'web.cfg'), 'web.cfg', (w) => warns.push(w));

test('bootloader = "pygrub" (or an xm-era path to it) makes a PV guest without a kernel; args as list or string', () => {
  const c = parse(`name = "web"\nbootloader = "/usr/bin/pygrub"\nbootloader_args = ["--entry=1"]\n${DISK}`);
  assert.equal(c.type, 'pv');
  assert.equal(c.bootloader, 'pygrub');
  assert.deepEqual(c.bootloaderArgs, ['--entry=1']);
  assert.deepEqual(parse(`name = "web"\nbootloader = "pygrub"\nbootloader_args = "--entry=0 --args=quiet"\n${DISK}`).bootloaderArgs, ['--entry=0', '--args=quiet']);
  assert.equal(parse(`name = "web"\ntype = "pv"\nbootloader = "pygrub"\n${DISK}`).type, 'pv');
  // The whole-shape validator takes it (every door), and xl.cfg output round-trips it.
  assert.deepEqual(validateDomainConfig(JSON.parse(JSON.stringify(c)), {}), c);
  assert.deepEqual(parse(formatXlCfg(c)), c);
});

test('an unknown bootloader is refused; with kernel= set, pygrub is ignored with a warning', () => {
  assert.throws(() => parse(`name = "web"\nbootloader = "/usr/bin/grub2"\n${DISK}`), /unknown bootloader/);
  const warns: string[] = [];
  const c = parse(`name = "web"\nkernel = "/k"\nbootloader = "pygrub"\n${DISK}`, warns);
  assert.equal(c.bootloader, undefined);
  assert.match(warns.join('\n'), /"bootloader" is ignored: "kernel" is set/);
});

test('the validator: bootloader is pygrub only, its args need it, a pv domain needs a kernel or pygrub', () => {
  const base = { name: 'web', type: 'pv', memory: 512, maxmem: 512, vcpus: 1, maxvcpus: 1, disks: [], vifs: [], onPoweroff: 'destroy', onReboot: 'restart', onCrash: 'destroy' };
  assert.throws(() => validateDomainConfig({ ...base, bootloader: 'grub' }, {}), /bootloader/);
  assert.throws(() => validateDomainConfig({ ...base, bootloaderArgs: ['--entry=1'] }, {}), /without a bootloader/);
  assert.throws(() => validateDomainConfig(base, {}), /needs a kernel or bootloader/);
  assert.equal(validateDomainConfig({ ...base, bootloader: 'pygrub' }, {}).bootloader, 'pygrub');
});
