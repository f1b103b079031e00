import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { XenoError } from '../common/errors.js';
import type { DomainConfig } from '../model/domain-config.js';
import { toDomainConfig } from './domain-config.js';
import { validateDomainConfig, validateMachineType, type ValidateOptions } from './validate.js';
import { MAX_VCPUS } from './validate-fields.js';
import { formatXlCfg } from './xlcfg-format.js';
import { parseXlCfg } from './xlcfg-parser.js';

const OPTS: ValidateOptions = { minGuestMem: 64, protectedPaths: ['/var/lib/xeno', '/etc/xeno/relocation.key'] };

const GOOD: DomainConfig = {
  name: 'web1', type: 'pv', memory: 128, maxmem: 256, vcpus: 1, maxvcpus: 2, kernel: '/boot/vmlinuz', ramdisk: '/boot/initrd.img',
  extra: 'quiet console=ttyS0,115200', disks: [{ target: '/srv/web1.img', format: 'raw', vdev: 'xvda', access: 'rw', devtype: 'disk' }],
  vifs: [{ devid: 0, mac: '00:16:3e:00:00:01', bridge: 'xenbr0', ip: '10.0.0.2', script: 'vif-bridge', rate: '10Mb/s', model: 'e1000', mtu: 1500 }],
  onPoweroff: 'destroy', onReboot: 'restart', onCrash: 'destroy',
};

function refuses(over: Record<string, unknown>, re: RegExp, code = 'CONFIG_INVALID'): void {
  const raw = { ...GOOD, ...over };
  assert.throws(
    () => validateDomainConfig(raw, OPTS),
    (e: unknown) => {
      assert.ok(e instanceof XenoError, String(e));
      assert.equal(e.code, code, e.message);
      assert.ok(e.status >= 400 && e.status < 500);
      assert.match(e.message, re);
      return true;
    },
    Object.keys(over).join(", "),
  );
}

const disk = (over: Record<string, unknown>) => [{ ...GOOD.disks[0], ...over }];
const vif = (over: Record<string, unknown>) => [{ devid: 0, ...over }];

describe('validateDomainConfig: golden good configs', () => {
  it('returns a full config unchanged, and validating twice changes nothing', () => {
    const c = validateDomainConfig(GOOD, OPTS);
    assert.deepEqual(c, GOOD);
    assert.deepEqual(validateDomainConfig(c, OPTS), c);
  });

  it('normalises: lower-case mac and uuid, script paths to their name, undefined fields dropped, paths resolved', () => {
    const c = validateDomainConfig(
      { ...GOOD, uuid: '6F1B1A52-7C1E-4B9E-8A65-0D6B7F8E9A10', cpus: undefined, kernel: '/boot/../boot/vmlinuz', vifs: vif({ mac: '00:16:3E:AA:BB:CC', script: '/etc/xen/scripts/vif-nat' }) },
      OPTS,
    );
    assert.equal(c.uuid, '6f1b1a52-7c1e-4b9e-8a65-0d6b7f8e9a10');
    assert.equal(c.kernel, '/boot/vmlinuz');
    assert.deepEqual(c.vifs, [{ devid: 0, mac: '00:16:3e:aa:bb:cc', script: 'vif-nat' }]);
    assert.ok(!('cpus' in c));
  });

  it('accepts what the xl.cfg normaliser produces (an empty cdrom, hvm from a disk, the limits themselves)', () => {
    const ast = parseXlCfg(
      `name = "h1"\nmemory = 64\nvcpus = ${MAX_VCPUS}\ndisk = [ '/srv/h1.img,raw,hda,w', ',,hdc:cdrom,r' ]\nvif = [ 'mac=00:16:3e:00:00:02' ]\n`,
      'h1.cfg',
    );
    const c = validateDomainConfig(toDomainConfig(ast), OPTS);
    assert.equal(c.type, 'hvm');
    assert.equal(c.vcpus, MAX_VCPUS);
    assert.equal(c.disks[1]!.target, '');
  });
});

describe('validateDomainConfig: every refusal names its field', () => {
  it('names: charset, all digits, Domain-0, type', () => {
    refuses({ name: '7' }, /^name: invalid domain name '7': all digits/, 'INVALID_NAME');
    refuses({ name: 'Domain-0' }, /^name: 'Domain-0' is the host's own name/, 'INVALID_NAME');
    refuses({ name: 'a b' }, /^name: invalid domain name "a b": use 1-64 characters/, 'INVALID_NAME');
    refuses({ name: 'x'.repeat(65) }, /^name: invalid domain name/, 'INVALID_NAME');
    refuses({ name: 7 }, /^name: expected a string, got 7/, 'INVALID_NAME');
  });

  it('ranges: memory floor, memory <= maxmem, 1 <= vcpus <= maxvcpus <= the limit', () => {
    refuses({ memory: 0 }, /^memory: 0 MiB is below the 64 MiB floor a guest needs \(xeno-min-guest-mem\)/);
    refuses({ memory: 63 }, /^memory: 63 MiB is below the 64 MiB floor/);
    refuses({ maxmem: -1 }, /^maxmem: -1 is out of range \(1 to \d+ MiB\)/);
    refuses({ memory: 512 }, /^memory: 512 MiB is above its maxmem of 256 MiB/);
    refuses({ vcpus: 0 }, /^vcpus: 0 is out of range \(1 to 128, xeno's limit\)/);
    refuses({ vcpus: 3 }, /^vcpus: 3 is above its maxvcpus of 2/);
    refuses({ vcpus: 100_000_000, maxvcpus: 100_000_000 }, /^maxvcpus: 100000000 is out of range \(1 to 128/);
    refuses({ cap: 201 }, /^cap: 201 is out of range \(0 to 200 = 100 per vcpu\)/);
    refuses({ cpuWeight: 0 }, /^cpuWeight: 0 is out of range/);
  });

  it('types: a number where a number is expected, strings, lists, objects; null is not absent', () => {
    refuses({ maxvcpus: '4,x=y' }, /^maxvcpus: expected an integer, got "4,x=y"/);
    refuses({ memory: '128' }, /^memory: expected an integer, got "128"/);
    refuses({ memory: 128.5 }, /^memory: expected an integer, got 128.5/);
    refuses({ memory: Number.NaN }, /^memory: expected an integer/);
    refuses({ extra: { a: 1 } }, /^extra: expected a string, got a object/);
    refuses({ kernel: null }, /^kernel: expected a string, got null/);
    refuses({ disks: 'xvda' }, /^disks: expected a list/);
    refuses({ vifs: [['mac=00:16:3e:00:00:01']] }, /^vifs\[0\]: expected an object, got a list/);
    assert.throws(() => validateDomainConfig([GOOD], OPTS), /config: expected an object, got a list/);
    assert.throws(() => validateDomainConfig('name = "x"', OPTS), /config: expected an object/);
  });

  it('shape: unknown fields are refused at every level, and mandatory ones are required', () => {
    refuses({ qemuArgs: ['-S'] }, /^qemuArgs: unknown field \(known: name, uuid/);
    refuses({ disks: disk({ iothread: 'x' }) }, /^disks\[0\]\.iothread: unknown field/);
    refuses({ disks: disk({ cache: 'off' }) }, /^disks\[0\]\.cache: /);
    refuses({ diskCache: 'fast' }, /^diskCache: /);
    refuses({ vifs: vif({ addr: '5' }) }, /^vifs\[0\]\.addr: unknown field/);
    const { maxmem: _m, ...noMaxmem } = GOOD;
    assert.throws(() => validateDomainConfig(noMaxmem, OPTS), /maxmem: missing/);
    refuses({ disks: [{ target: '/a', format: 'raw', vdev: 'xvda', access: 'rw' }] }, /^disks\[0\]\.devtype: missing/);
    // A 100,000-deep value is "not a string", not a stack overflow.
    let deep: unknown = [];
    for (let i = 0; i < 100_000; i++) deep = [deep];
    refuses({ extra: deep }, /^extra: expected a string, got a list/);
  });

  it('charsets of everything that reaches QEMU, nftables, dnsmasq, tc or a path', () => {
    refuses({ disks: disk({ vdev: 'xvda,addr=0x1f' }) }, /^disks\[0\]\.vdev: "xvda,addr=0x1f" is not a guest disk name/);
    refuses({ disks: disk({ format: 'raw,file.locking=off' }) }, /^disks\[0\]\.format: "raw,file.locking=off" is not one of raw, qcow/);
    refuses({ disks: disk({ access: 'w' }) }, /^disks\[0\]\.access:/);
    refuses({ disks: disk({ target: '/srv/a.img,readonly=off' }) }, /^disks\[0\]\.target: .* contains a comma/);
    refuses({ disks: disk({ target: 'srv/a.img' }) }, /^disks\[0\]\.target: "srv\/a.img" is not an absolute path/);
    refuses({ disks: disk({ target: '/srv/a\nb' }) }, /^disks\[0\]\.target: .* contains a control character/);
    refuses({ disks: disk({ target: '/srv/$(reboot)' }) }, /^disks\[0\]\.target: .* has characters outside/);
    refuses({ disks: disk({ target: '' }) }, /^disks\[0\]\.target: empty/);
    refuses({ disks: [...GOOD.disks, ...disk({ target: '/srv/b.img' })] }, /^disks\[1\]\.vdev: "xvda" is already used by disks\[0\]/);
    refuses({ kernel: '/boot/vmlinuz,x' }, /^kernel: .* contains a comma/);
    refuses({ ramdisk: '/boot/initrd\u0000' }, /^ramdisk: .* contains a control character/);
    refuses({ extra: 'quiet\ninit=/bin/sh' }, /^extra: .* contains a control character/);
    refuses({ root: '/dev/xvda\r' }, /^root: .* control character/);
    refuses({ cmdline: 'x'.repeat(2000) }, /^cmdline: is longer than 1536/);
    refuses({ hostname: 'a\nb' }, /^hostname: .* control character/);
    refuses({ hostname: 'a_b' }, /^hostname: "a_b" is not a host name/);
    refuses({ uuid: 'nope' }, /^uuid: "nope" is not a uuid/);
    refuses({ cpus: '0;reboot' }, /^cpus: "0;reboot" is not a CPU list/);
    refuses({ cpus: '3-1' }, /^cpus: /);
    refuses({ onCrash: 'reboot-the-host' }, /^onCrash: "reboot-the-host" is not one of destroy, restart/);
    refuses({ type: 'xen' }, /^type: "xen" is not one of pv, pvh, hvm/);
    refuses({ kernel: undefined, ramdisk: undefined }, /^kernel: a pv domain needs a kernel/);
  });

  it('vifs: mac, names, ip, rate, script, model, type, mtu, duplicates', () => {
    refuses({ vifs: vif({ mac: 'zz:16:3e:00:00:01' }) }, /^vifs\[0\]\.mac: "zz:16:3e:00:00:01" is not a MAC address/);
    refuses({ vifs: vif({ mac: '01:16:3e:00:00:01' }) }, /^vifs\[0\]\.mac: 01:16:3e:00:00:01 is a multicast address/);
    refuses({ vifs: vif({ bridge: 'br0\nx' }) }, /^vifs\[0\]\.bridge: .* control character/);
    refuses({ vifs: vif({ bridge: 'br0;x' }) }, /^vifs\[0\]\.bridge: "br0;x" is not an interface name/);
    refuses({ vifs: vif({ gatewaydev: 'a'.repeat(16) }) }, /^vifs\[0\]\.gatewaydev: is longer than 15/);
    refuses({ vifs: vif({ vifname: '0bad' }) }, /^vifs\[0\]\.vifname: "0bad" must start with a letter/);
    refuses({ vifs: vif({ vifname: 'forward' }) }, /^vifs\[0\]\.vifname: "forward" is reserved/);
    refuses({ vifs: vif({ vifname: 'from_x' }) }, /^vifs\[0\]\.vifname: "from_x" is reserved/);
    refuses({ vifs: vif({ ip: '10.0.0.1; drop' }) }, /^vifs\[0\]\.ip: "10.0.0.1;" is not an IP address/);
    refuses({ vifs: vif({ ip: '' }) }, /^vifs\[0\]\.ip: expected 1 to 8 addresses/);
    refuses({ vifs: vif({ rate: '1Mb/s burst 1' }) }, /^vifs\[0\]\.rate: invalid rate/);
    refuses({ vifs: vif({ script: '/tmp/evil' }) }, /^vifs\[0\]\.script: "\/tmp\/evil" is not one of vif-bridge/);
    refuses({ vifs: vif({ script: '/tmp/x;/vif-nat' }) }, /^vifs\[0\]\.script:/);
    refuses({ vifs: vif({ model: 'e1000,romfile=/etc/shadow' }) }, /^vifs\[0\]\.model: .* is not one of virtio/);
    refuses({ vifs: vif({ model: 'pvpanic' }) }, /^vifs\[0\]\.model: "pvpanic" is not one of/);
    refuses({ vifs: vif({ type: 'tap' }) }, /^vifs\[0\]\.type:/);
    refuses({ vifs: vif({ mtu: 10 }) }, /^vifs\[0\]\.mtu: 10 is out of range \(68 to 65535\)/);
    refuses({ vifs: vif({ devid: -1 }) }, /^vifs\[0\]\.devid: -1 is out of range/);
    refuses({ vifs: [{ devid: 0 }, { devid: 0 }] }, /^vifs\[1\]\.devid: 0 is already used by vifs\[0\]/);
    refuses({ vifs: [{ devid: 0, mac: '00:16:3e:00:00:01' }, { devid: 1, mac: '00:16:3E:00:00:01' }] }, /^vifs\[1\]\.mac: .* already used/);
    refuses({ vifs: Array.from({ length: 9 }, (_, i) => ({ devid: i })) }, /^vifs: 9 entries, at most 8/);
  });

  it("xenod's own files: anything under the state dir, the relocation key", () => {
    refuses({ disks: disk({ target: '/var/lib/xeno/xeno.db' }) }, /^disks\[0\]\.target: \/var\/lib\/xeno\/xeno.db is xenod's own state \(\/var\/lib\/xeno\)/);
    refuses({ disks: disk({ target: '/var/lib/xeno/run/3/qmp.sock' }) }, /xenod's own state/);
    refuses({ disks: disk({ target: '/var/lib/xeno' }) }, /xenod's own state/);
    refuses({ disks: disk({ target: '/srv/../var/lib/xeno/console/web1.log' }) }, /xenod's own state/);
    refuses({ ramdisk: '/etc/xeno/relocation.key' }, /^ramdisk: \/etc\/xeno\/relocation.key is xenod's own state/);
    // A sibling that only shares a prefix is not inside.
    assert.equal(validateDomainConfig({ ...GOOD, disks: disk({ target: '/var/lib/xeno2/a.img' }) }, OPTS).disks[0]!.target, '/var/lib/xeno2/a.img');
  });

  it('machine types', () => {
    assert.equal(validateMachineType('pc-i440fx-7.2'), 'pc-i440fx-7.2');
    assert.throws(() => validateMachineType('pc,accel=kvm'), /machineType: "pc,accel=kvm" is not a QEMU machine type name/);
    assert.throws(() => validateMachineType(7), /machineType: expected a string/);
  });
});

describe('validateDomainConfig: pool HA (ha, ha_restart_priority)', () => {
  it('ha = 1 and ha_restart_priority come through the xl.cfg normaliser and the validator, and format back', () => {
    const text = `name = "h2"\nkernel = "/boot/vmlinuz"\nmemory = 64\nha = 1\nha_restart_priority = 7\n`;
    const c = validateDomainConfig(toDomainConfig(parseXlCfg(text, 'h2.cfg')), OPTS);
    assert.equal(c.ha, true);
    assert.equal(c.haRestartPriority, 7);
    const again = validateDomainConfig(toDomainConfig(parseXlCfg(formatXlCfg(c), 'again.cfg')), OPTS);
    assert.deepEqual(again, c);
    // ha = 0 is the default and normalises away.
    assert.equal(validateDomainConfig({ ...GOOD, ha: false }, OPTS).ha, undefined);
  });

  it('refuses a bad ha, a priority out of range, and a priority without ha', () => {
    refuses({ ha: 1 }, /^ha: expected true or false, got 1/);
    refuses({ ha: true, haRestartPriority: 1001 }, /^haRestartPriority: 1001 is out of range \(0 to 1000\)/);
    refuses({ ha: true, haRestartPriority: -1 }, /^haRestartPriority: -1 is out of range/);
    refuses({ haRestartPriority: 5 }, /^haRestartPriority: is only meaningful with ha = 1/);
    assert.throws(() => toDomainConfig(parseXlCfg('name = "h3"\nkernel = "/k"\nha = 2\n', 'h3.cfg')), /ha/);
  });
});
