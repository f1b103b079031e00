import assert from 'node:assert/strict';
import { test } from 'node:test';
import { diskNameWarnings, translateDiskNames, vdevIndex } from '../../config/disk-order.js';
import type { CacheMode, DiskSpec, DomainConfig } from '../../model/domain-config.js';
import type { AioMode, DiskHostFacts } from './disk-argv.js';
import { buildQemuArgv, guestCmdline } from './argv.js';
import { decideAccel } from './accel.js';
import { hostCpuFlags, tlsPskPriority } from './tls-priority.js';

const base: DomainConfig = {
  name: 'web', type: 'pv', memory: 128, maxmem: 256, vcpus: 1, maxvcpus: 2, kernel: '/k', ramdisk: '/r', extra: 'quiet',
  hostname: 'web', disks: [{ target: '/srv/a,b.img', format: 'qcow2', vdev: 'xvda', access: 'ro', devtype: 'disk' }],
  vifs: [], onPoweroff: 'destroy', onReboot: 'restart', onCrash: 'destroy',
};
const paths = { qmp: '/run/x/qmp.sock', serial: '/run/x/serial.sock', hvc: '/run/x/hvc0.sock', qga: '/run/x/qga.sock', pidfile: '/run/x/qemu.pid' };

function opt(argv: string[], flag: string): string[] {
  return argv.flatMap((a, i) => (a === flag ? [argv[i + 1]!] : []));
}

test('the argv pins a versioned machine type, sandboxes QEMU and sizes RAM at maxmem', () => {
  const argv = buildQemuArgv({ domid: 3, config: base, uuid: 'u', machineType: 'pc-i440fx-7.2', accel: 'tcg', paths, nics: [], tbSizeMb: 64 });
  assert.deepEqual(opt(argv, '-machine'), ['pc-i440fx-7.2']);
  assert.deepEqual(opt(argv, '-accel'), ['tcg,tb-size=64']);
  assert.deepEqual(opt(argv, '-m'), ['size=256M']);
  assert.deepEqual(opt(argv, '-smp'), ['1,sockets=1,cores=2,threads=1,maxcpus=2']);
  assert.match(opt(argv, '-sandbox')[0]!, /^on,/);
  assert.deepEqual(opt(argv, '-action'), ['reboot=shutdown,shutdown=pause,panic=pause']);
  assert.ok(opt(argv, '-device').some((d) => d.startsWith('virtio-balloon-pci')));
  assert.ok(opt(argv, '-device').includes('pvpanic'));
  // -blockdev JSON (a comma in the path needs no escaping), never -drive; the naming convention
  assert.deepEqual(opt(argv, '-drive'), []);
  assert.deepEqual(opt(argv, '-blockdev').map((j) => JSON.parse(j)), [
    { driver: 'file', 'node-name': 'file-xvda', filename: '/srv/a,b.img', aio: 'threads', cache: { direct: false, 'no-flush': false }, 'read-only': true, 'auto-read-only': false, discard: 'unmap' },
    { driver: 'qcow2', 'node-name': 'disk-xvda', file: 'file-xvda', cache: { direct: false, 'no-flush': false }, 'read-only': true },
  ]);
  assert.ok(opt(argv, '-device').includes('virtio-blk-pci,id=xvda,drive=disk-xvda,serial=xvda,write-cache=on,addr=0x10'));
  assert.ok(!argv.includes('-S'));
});

test('vcpus beyond the first are cpu devices with the ids and topology hot-plug uses', () => {
  const argv = buildQemuArgv({ domid: 3, config: { ...base, vcpus: 3, maxvcpus: 4 }, uuid: 'u', machineType: 'm', accel: 'tcg', paths, nics: [] });
  assert.deepEqual(opt(argv, '-smp'), ['1,sockets=1,cores=4,threads=1,maxcpus=4']);
  assert.deepEqual(
    opt(argv, '-device').filter((d) => d.includes('-x86_64-cpu')),
    ['qemu64-x86_64-cpu,id=vcpu1,socket-id=0,core-id=1,thread-id=0', 'qemu64-x86_64-cpu,id=vcpu2,socket-id=0,core-id=2,thread-id=0'],
  );
});

test('kvm gets the host cpu; incoming and paused starts stop the vcpus', () => {
  const argv = buildQemuArgv({ domid: 3, config: base, uuid: 'u', machineType: 'pc-i440fx-7.2', accel: 'kvm', paths, nics: [], incoming: true });
  assert.deepEqual(opt(argv, '-accel'), ['kvm']);
  assert.deepEqual(opt(argv, '-cpu'), ['host']);
  assert.ok(argv.includes('-S'));
  assert.deepEqual(opt(argv, '-incoming'), ['defer']);
});

test('an incoming QEMU can get TLS-PSK credentials for the migration stream', () => {
  const argv = buildQemuArgv({ domid: 3, config: base, uuid: 'u', machineType: 'm', accel: 'tcg', paths, nics: [], incoming: true, tlsPskDir: '/run/x/t,ls' });
  assert.deepEqual(opt(argv, '-object'), [`tls-creds-psk,id=xenomig0,endpoint=server,dir=/run/x/t,,ls,priority=${tlsPskPriority(hostCpuFlags())}`]);
  assert.deepEqual(opt(buildQemuArgv({ domid: 3, config: base, uuid: 'u', machineType: 'm', accel: 'tcg', paths, nics: [], tlsPskDir: '/d' }), '-object'), [], 'only for an incoming QEMU');
  assert.deepEqual(opt(buildQemuArgv({ domid: 3, config: base, uuid: 'u', machineType: 'm', accel: 'tcg', paths, nics: [], incoming: true }), '-object'), []);
});

test('nics become tap netdevs named after the vif, with virtio-net frontends', () => {
  const argv = buildQemuArgv({ domid: 3, config: base, uuid: 'u', machineType: 'm', accel: 'tcg', paths, nics: [{ devid: 0, ifname: 'vif3.0', mac: '00:16:3e:00:00:01' }] });
  assert.deepEqual(opt(argv, '-netdev'), ['tap,id=net0,ifname=vif3.0,script=no,downscript=no']);
  assert.ok(opt(argv, '-device').includes('virtio-net-pci,netdev=net0,mac=00:16:3e:00:00:01,id=nic0'));
});

test('the guest command line gets the serial console and hostname unless already there', () => {
  assert.equal(guestCmdline(base), 'console=ttyS0 quiet xeno.hostname=web systemd.hostname=web');
  assert.equal(guestCmdline({ ...base, cmdline: 'console=hvc0 hostname=x' }), 'console=hvc0 hostname=x');
  assert.equal(guestCmdline({ ...base, root: '/dev/xvda ro', extra: undefined, hostname: undefined }), 'console=ttyS0 root=/dev/vda ro');
});

const disk = (vdev: string, extra: Partial<DiskSpec> = {}): DiskSpec => ({ target: `/srv/${vdev}.img`, format: 'raw', vdev, access: 'rw', devtype: 'disk', ...extra });

test('Xen disk names: disks go on the bus in vdev order, and the kernel command line names them as virtio does', () => {
  const c: DomainConfig = { ...base, disks: [disk('xvdb'), disk('xvda'), disk('hdc', { devtype: 'cdrom', target: '' })], root: '/dev/xvda1 ro', extra: 'resume=/dev/xvdb2 data=/dev/sdb swap=/dev/xvdq' };
  const argv = buildQemuArgv({ domid: 3, config: c, uuid: 'u', machineType: 'm', accel: 'tcg', paths, nics: [] });
  assert.deepEqual(opt(argv, '-device').filter((d) => d.startsWith('virtio-blk-pci')), [
    'virtio-blk-pci,id=xvda,drive=disk-xvda,serial=xvda,write-cache=on,addr=0x10', 'virtio-blk-pci,id=xvdb,drive=disk-xvdb,serial=xvdb,write-cache=on,addr=0x11',
  ]);
  assert.ok(opt(argv, '-device').includes('ide-cd,id=hdc'), 'the empty cdrom is an ide-cd without a drive');
  assert.ok(!opt(argv, '-blockdev').some((j) => j.includes('-hdc')), 'an empty tray has no nodes');
  // the unknown xvdq stays as written; sdb is the second disk's index too
  assert.equal(guestCmdline(c), 'console=ttyS0 root=/dev/vda1 ro resume=/dev/vdb2 data=/dev/vdb swap=/dev/xvdq xeno.hostname=web systemd.hostname=web');
  assert.deepEqual(translateDiskNames('root=/dev/xvdb', [disk('xvdb')]), { cmdline: 'root=/dev/vda', changes: ['/dev/xvdb -> /dev/vda'] });
  assert.deepEqual(diskNameWarnings({ ...base, disks: [disk('xvdb')], root: '/dev/xvdb' }, 'root=/dev/xvdb'), [
    'warning: disk xvdb appears in the guest as /dev/vda (virtio names disks by rank: xeno keeps the vdev order, not gaps)',
    "warning: kernel command line: /dev/xvdb -> /dev/vda (the guest's disks are virtio-blk)",
  ]);
  assert.deepEqual([vdevIndex('xvda'), vdevIndex('hdb'), vdevIndex('sdz'), vdevIndex('xvdaa'), vdevIndex('xvdb3')], [0, 1, 25, 26, 1]);
});

test('cache modes: none and directsync open with O_DIRECT; the device write cache follows the mode; native AIO only with O_DIRECT', () => {
  const facts = (cache: CacheMode, aio: AioMode = 'io_uring', hostDevice = false) => new Map([['xvda', { cache, aio, hostDevice }]]);
  const build = (f: ReadonlyMap<string, DiskHostFacts>) => buildQemuArgv({ domid: 3, config: { ...base, disks: [disk('xvda')] }, uuid: 'u', machineType: 'm', accel: 'tcg', paths, nics: [], diskFacts: f });
  const nodes = (f: ReadonlyMap<string, DiskHostFacts>) => opt(build(f), '-blockdev').map((j) => JSON.parse(j));
  const dev = (f: ReadonlyMap<string, DiskHostFacts>) => opt(build(f), '-device').find((d) => d.startsWith('virtio-blk'))!;
  assert.deepEqual(nodes(facts('none'))[0].cache, { direct: true, 'no-flush': false });
  assert.equal(nodes(facts('none'))[0].aio, 'io_uring');
  assert.match(dev(facts('none')), /write-cache=on/);
  assert.match(dev(facts('directsync')), /write-cache=off/);
  assert.deepEqual(nodes(facts('unsafe'))[1].cache, { direct: false, 'no-flush': true });
  assert.equal(nodes(facts('writeback', 'native'))[0].aio, 'threads');
  assert.equal(nodes(facts('none', 'native', true))[0].driver, 'host_device');
  // the guest's diskCache applies to disks without their own cache=
  const c: DomainConfig = { ...base, diskCache: 'writethrough', disks: [disk('xvda'), disk('xvdb', { cache: 'none' })] };
  const argv = buildQemuArgv({ domid: 3, config: c, uuid: 'u', machineType: 'm', accel: 'tcg', paths, nics: [] });
  assert.deepEqual(opt(argv, '-device').filter((d) => d.startsWith('virtio-blk')).map((d) => /write-cache=(\w+)/.exec(d)![1]), ['off', 'on']);
});

test('every guest gets a virtio console beside the serial line (console=hvc0)', () => {
  const argv = buildQemuArgv({ domid: 3, config: base, uuid: 'u', machineType: 'm', accel: 'tcg', paths, nics: [] });
  assert.ok(opt(argv, '-device').includes('virtio-serial-pci,id=vserial0'));
  assert.ok(opt(argv, '-chardev').includes('socket,id=hvc0,path=/run/x/hvc0.sock,server=on,wait=off'));
  assert.ok(opt(argv, '-device').includes('virtconsole,chardev=hvc0,id=hvc0dev'));
  // The guest agent's port sits on a virtio-serial bus of its own: no bus or id shared with hvc0.
  assert.ok(opt(argv, '-device').includes('virtio-serial-pci,id=qgaserial0'));
  assert.ok(opt(argv, '-chardev').includes('socket,id=qga0,path=/run/x/qga.sock,server=on,wait=off'));
  assert.ok(opt(argv, '-device').includes('virtserialport,bus=qgaserial0.0,chardev=qga0,id=qga0port,name=org.qemu.guest_agent.0'));
  const ids = opt(argv, '-device').concat(opt(argv, '-chardev')).map((d) => /(?:^|,)id=([^,]+)/.exec(d)?.[1]).filter(Boolean);
  assert.equal(new Set(ids).size, ids.length, `unique ids: ${ids.join(' ')}`);
});

test('hvm: boot order in Xen letters becomes per-device bootindex; no -boot string, no kernel', () => {
  const hvm: DomainConfig = { ...base, type: 'hvm', kernel: undefined, ramdisk: undefined, extra: undefined, disks: [disk('xvdb'), disk('hdc', { devtype: 'cdrom', format: 'raw', access: 'ro' }), disk('xvda')] };
  const nic = [{ devid: 0, ifname: 'vif3.0', mac: '00:16:3e:00:00:01' }];
  const build = (c: DomainConfig) => buildQemuArgv({ domid: 3, config: c, uuid: 'u', machineType: 'm', accel: 'tcg', paths, nics: nic });
  const devs = (c: DomainConfig) => opt(build(c), '-device').filter((d) => /^(virtio-blk|ide-cd|virtio-net)/.test(d));
  assert.deepEqual(devs(hvm), [
    'ide-cd,id=hdc,drive=disk-hdc,bootindex=2',
    'virtio-blk-pci,id=xvda,drive=disk-xvda,serial=xvda,write-cache=on,addr=0x10,bootindex=0',
    'virtio-blk-pci,id=xvdb,drive=disk-xvdb,serial=xvdb,write-cache=on,addr=0x11,bootindex=1',
    'virtio-net-pci,netdev=net0,mac=00:16:3e:00:00:01,id=nic0',
  ]);
  assert.deepEqual(devs({ ...hvm, boot: 'dnc' }), [
    'ide-cd,id=hdc,drive=disk-hdc,bootindex=0',
    'virtio-blk-pci,id=xvda,drive=disk-xvda,serial=xvda,write-cache=on,addr=0x10,bootindex=2',
    'virtio-blk-pci,id=xvdb,drive=disk-xvdb,serial=xvdb,write-cache=on,addr=0x11,bootindex=3',
    'virtio-net-pci,netdev=net0,mac=00:16:3e:00:00:01,id=nic0,bootindex=1',
  ]);
  assert.deepEqual(opt(build(hvm), '-blockdev').map((j) => JSON.parse(j)).filter((n) => n['node-name'].endsWith('-hdc')).map((n) => [n['node-name'], n.driver, n['read-only']]),
    [['file-hdc', 'file', true], ['disk-hdc', 'raw', true]], 'a cdrom with media: read-only nodes');
  assert.ok(!build(hvm).includes('-boot') && !build(hvm).includes('-kernel'));
  assert.throws(() => build({ ...hvm, boot: 'c,menu=on' }), /not Xen boot letters/);
  assert.deepEqual(devs({ ...base, boot: 'd' }).filter((d) => d.includes('bootindex')), [], 'a kernel boot has no boot order');
});

test('vnc: a structured -vnc from validated values, password=on with the password kept out of argv', () => {
  const build = (vnc: DomainConfig['vnc']) => buildQemuArgv({ domid: 3, config: { ...base, vnc }, uuid: 'u', machineType: 'm', accel: 'tcg', paths, nics: [] });
  assert.deepEqual(opt(build(undefined), '-display'), ['none']);
  assert.deepEqual(opt(build(undefined), '-vnc'), []);
  assert.deepEqual(opt(build({ listen: '127.0.0.1' }), '-vnc'), ['127.0.0.1:0,to=99']);
  assert.deepEqual(opt(build({ listen: '127.0.0.1', display: 7 }), '-vga'), ['std']);
  const pw = build({ listen: '0.0.0.0', display: 3, password: 'se,cret' });
  assert.deepEqual(opt(pw, '-vnc'), ['0.0.0.0:3,password=on']);
  assert.ok(!pw.some((a) => a.includes('se,cret')), 'the password is set over QMP, never in argv');
  assert.deepEqual(opt(build({ listen: '::1', display: 1 }), '-vnc'), ['[::1]:1']);
  assert.throws(() => build({ listen: '127.0.0.1,share=ignore', display: 1 }), /not an IP address/);
});

test('accelerator: KVM only when the CPU has vmx/svm, /dev/kvm opens and the probe guest ran', () => {
  assert.equal(decideAccel('auto', { cpuFlags: ['fpu', 'hypervisor'], kvmDeviceUsable: true }).accel, 'tcg');
  assert.match(decideAccel('auto', { cpuFlags: ['hypervisor'], kvmDeviceUsable: true }).reason, /no vmx\/svm/);
  assert.equal(decideAccel('auto', { cpuFlags: ['vmx'], kvmDeviceUsable: false }).accel, 'tcg');
  const hung = decideAccel('auto', { cpuFlags: ['vmx'], kvmDeviceUsable: true, probe: { ok: false, detail: 'no answer within 4000 ms' } });
  assert.equal(hung.accel, 'tcg');
  assert.match(hung.reason, /present but a probe guest failed/);
  assert.equal(decideAccel('auto', { cpuFlags: ['svm'], kvmDeviceUsable: true, probe: { ok: true, detail: '' } }).accel, 'kvm');
  assert.equal(decideAccel('tcg', { cpuFlags: ['vmx'], kvmDeviceUsable: true, probe: { ok: true, detail: '' } }).accel, 'tcg');
  assert.equal(decideAccel('kvm', { cpuFlags: [], kvmDeviceUsable: false }).accel, 'kvm');
});

test('the argv builder refuses what would break out of an option string, whatever the caller validated', () => {
  const build = (config: DomainConfig, extra: Partial<Parameters<typeof buildQemuArgv>[0]> = {}) => () =>
    buildQemuArgv({ domid: 3, config, uuid: 'u', machineType: 'pc', accel: 'tcg', paths, nics: [], ...extra });
  const refused = /CONFIG_INVALID|cannot go into a QEMU option string|not a whole number|control character|above maxvcpus/;
  assert.throws(build({ ...base, disks: [{ ...base.disks[0]!, vdev: 'xvda,addr=0x1f' }] }), /vdev "xvda,addr=0x1f" cannot go into a QEMU option string/);
  assert.throws(build({ ...base, disks: [{ ...base.disks[0]!, target: 'rel.img' }] }), /not an absolute path/);
  assert.throws(build({ ...base, disks: [{ ...base.disks[0]!, target: '/srv/a\nb' }] }), /control character/);
  assert.throws(build(base, { machineType: 'pc,accel=kvm' }), /machine type "pc,accel=kvm"/);
  assert.throws(build(base, { uuid: 'u,x=y' }), refused);
  assert.throws(build({ ...base, maxvcpus: '4,x=y' as unknown as number }), /maxvcpus 4,x=y is not a whole number/);
  assert.throws(build({ ...base, maxmem: -1 }), /maxmem -1 is not a whole number/);
  assert.throws(build({ ...base, vcpus: 100_000_000 }), /vcpus 100000000 is above maxvcpus 2/);
  assert.throws(build(base, { nics: [{ devid: 0, ifname: 'vif3.0', mac: '00:16:3e:00:00:01', model: 'e1000,romfile=/x' }] }), /NIC model/);
  assert.throws(build(base, { nics: [{ devid: 0, ifname: 'vif3.0,x', mac: '00:16:3e:00:00:01' }] }), /vif name/);
});
