import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { XenoError } from '../common/errors.js';
import type { DomainConfig } from '../model/domain-config.js';
import { applyOverrides, parseDomainConfigFile, toDomainConfig } from './domain-config.js';
import { parseXlCfg } from './xlcfg-parser.js';
import { formatXlCfg } from './xlcfg-format.js';

function cfg(text: string, warnings: string[] = [], file = 'guest.cfg'): DomainConfig {
  return toDomainConfig(parseXlCfg(text, file), file, (m) => warnings.push(m));
}

function invalid(text: string, expected: RegExp, code = 'CONFIG_INVALID'): void {
  assert.throws(
    () => cfg(text),
    (e: unknown) => {
      assert.ok(e instanceof XenoError, `not a XenoError: ${String(e)}`);
      assert.equal(e.code, code);
      assert.match(e.message, expected);
      return true;
    },
  );
}

const XM_FILE = `#  -*- mode: python; -*-
#============================================================================
# Python configuration setup for 'xm create'.
#============================================================================

# Kernel image file.
kernel = "/boot/vmlinuz"

# Initial memory allocation (in megabytes) for the new domain.
memory = 128

# A name for your domain. All domains must have different names.
name = "web"

# Define network interfaces: one with all defaults.
vif = [ '' ]

# Define the disk devices you want the domain to have access to.
disk = [ 'file:/srv/web.img,xvda,w' ]

# Set root device.
root = "/dev/xvda1 ro"

# Sets runlevel 4 and the hostname.
extra = "hostname=web"
`;

const XL_FILE = `# =====================================================================
# Example PV Linux guest configuration
# =====================================================================
name = "db01"
type = "pv"
uuid = "4DDE3A2C-8B61-4C4B-9E2B-1C2A3F4E5D6C"
kernel = "/srv/xen/vmlinuz-6.1"
ramdisk = "/srv/xen/initrd.img-6.1"
cmdline = "console=hvc0 root=/dev/xvda1 xeno.hostname=db01.example.org"
memory = 1024
maxmem = 2048
vcpus = 2
maxvcpus = 4
cpus = "0-3,^1"
cpu_weight = 512
cap = 150
on_poweroff = "destroy"
on_reboot = "restart"
on_crash = "preserve"
restart_limit = 3
vif = [ 'mac=00:16:3e:5a:01:02,bridge=xenbr0',
        'bridge=xenbr1,rate=100Mb/s', ]
disk = [ '/dev/vg/db01-root,raw,xvda,rw',
         'format=qcow2, vdev=xvdb, access=rw, target=/srv/db01-data.qcow2',
         '/srv/isos/tools.iso,,hdc,cdrom' ]
`;

describe('toDomainConfig', () => {
  it('normalises an xm-style file', () => {
    const warnings: string[] = [];
    assert.deepEqual(cfg(XM_FILE, warnings), {
      name: 'web',
      type: 'pv',
      memory: 128,
      maxmem: 128,
      vcpus: 1,
      maxvcpus: 1,
      kernel: '/boot/vmlinuz',
      root: '/dev/xvda1 ro',
      extra: 'hostname=web',
      hostname: 'web',
      disks: [{ target: '/srv/web.img', format: 'raw', vdev: 'xvda', access: 'rw', devtype: 'disk' }],
      vifs: [{ devid: 0 }],
      onPoweroff: 'destroy',
      onReboot: 'restart',
      onCrash: 'destroy',
    });
    assert.deepEqual(warnings, []);
  });

  it('normalises an xl-style file', () => {
    assert.deepEqual(cfg(XL_FILE), {
      name: 'db01',
      uuid: '4dde3a2c-8b61-4c4b-9e2b-1c2a3f4e5d6c',
      type: 'pv',
      memory: 1024,
      maxmem: 2048,
      vcpus: 2,
      maxvcpus: 4,
      cpus: '0-3,^1',
      cpuWeight: 512,
      cap: 150,
      kernel: '/srv/xen/vmlinuz-6.1',
      ramdisk: '/srv/xen/initrd.img-6.1',
      cmdline: 'console=hvc0 root=/dev/xvda1 xeno.hostname=db01.example.org',
      hostname: 'db01.example.org',
      disks: [
        { target: '/dev/vg/db01-root', format: 'raw', vdev: 'xvda', access: 'rw', devtype: 'disk' },
        { target: '/srv/db01-data.qcow2', format: 'qcow2', vdev: 'xvdb', access: 'rw', devtype: 'disk' },
        { target: '/srv/isos/tools.iso', format: 'raw', vdev: 'hdc', access: 'ro', devtype: 'cdrom' },
      ],
      vifs: [
        { devid: 0, mac: '00:16:3e:5a:01:02', bridge: 'xenbr0' },
        { devid: 1, bridge: 'xenbr1', rate: '100Mb/s' },
      ],
      onPoweroff: 'destroy',
      onReboot: 'restart',
      onCrash: 'preserve',
      restartLimit: 3,
    });
  });

  it('fills defaults: hvm without a kernel, no disks or vifs', () => {
    assert.deepEqual(cfg('name = "bare"'), {
      name: 'bare',
      type: 'hvm',
      memory: 128,
      maxmem: 128,
      vcpus: 1,
      maxvcpus: 1,
      disks: [],
      vifs: [],
      onPoweroff: 'destroy',
      onReboot: 'restart',
      onCrash: 'destroy',
    });
  });

  it('reads type and the old builder key', () => {
    assert.equal(cfg('name="a"\nbuilder="hvm"').type, 'hvm');
    assert.equal(cfg('name="a"\nbuilder="linux"\nkernel="/k"').type, 'pv');
    assert.equal(cfg('name="a"\ntype="pvh"\nkernel="/k"').type, 'pvh');
    assert.equal(cfg('name="a"\ntype="hvm"\nkernel="/k"').type, 'hvm');
    const w: string[] = [];
    assert.equal(cfg('name="a"\ntype="hvm"\nbuilder="linux"', w).type, 'hvm');
    assert.deepEqual(w, ['guest.cfg:3:9: warning: "builder" is ignored when "type" is set']);
    invalid('name="a"\ntype="xen"', /^guest\.cfg:2:6: key "type": unknown type "xen"/);
    invalid('name="a"\nbuilder="solaris"', /^guest\.cfg:2:9: key "builder": unknown builder/);
    invalid('name="a"\ntype="pv"', /^guest\.cfg:2:6: a pv guest needs a kernel/);
    invalid('name="a"\nbuilder="linux"', /^guest\.cfg:2:9: a pv guest needs a kernel/);
  });

  it('accepts numbers written as strings, and memory sizes with units', () => {
    const c = cfg('name="a"\nmemory="512"\nmaxmem="1g"\nvcpus="2"\nmaxvcpus=0x4\ncpu_weight="300"\ncap=010');
    assert.equal(c.memory, 512);
    assert.equal(c.maxmem, 1024);
    assert.equal(c.vcpus, 2);
    assert.equal(c.maxvcpus, 4);
    assert.equal(c.cpuWeight, 300);
    assert.equal(c.cap, 8);
  });

  it('reports values of the wrong type with their position', () => {
    invalid('name = "a"\nmemory = [512]', /^guest\.cfg:2:10: key "memory" expects a number$/);
    invalid('name = "a"\nvcpus = "two"', /^guest\.cfg:2:9: key "vcpus" expects a number$/);
    invalid('name = "a"\nvcpus = [1]', /^guest\.cfg:2:9: key "vcpus" expects a number$/);
    invalid('name = 7', /^guest\.cfg:1:8: key "name" expects a string$/);
    invalid('name = "a"\nkernel = 1', /^guest\.cfg:2:10: key "kernel" expects a string$/);
    invalid('name = "a"\nextra = ["x"]', /^guest\.cfg:2:9: key "extra" expects a string$/);
    invalid('name = "a"\ndisk = "/a,,xvda"', /^guest\.cfg:2:8: key "disk" expects a list of strings$/);
    invalid('name = "a"\nvif = [ "", 3 ]', /^guest\.cfg:2:13: key "vif" expects a list of strings$/);
    invalid('name = "a"\non_crash = 1', /^guest\.cfg:2:12: key "on_crash" expects a string$/);
    invalid('name = "a"\nmemory = "lots"', /^guest\.cfg:2:10: invalid memory size "lots"/);
  });

  it('checks ranges and cross-key constraints', () => {
    invalid('name="a"\nmemory=0', /^guest\.cfg:2:8: key "memory" must be at least 1 MiB/);
    invalid('name="a"\nmemory=512\nmaxmem=256', /^guest\.cfg:3:8: maxmem \(256\) must not be less than memory \(512\)/);
    invalid('name="a"\nvcpus=0', /^guest\.cfg:2:7: key "vcpus" must be between 1 and 128 \(got 0\)/);
    invalid('name="a"\nvcpus="-1"', /key "vcpus" must be between 1 and 128 \(got -1\)/);
    invalid('name="a"\nvcpus=4\nmaxvcpus=2', /^guest\.cfg:3:10: maxvcpus \(2\) must not be less than vcpus \(4\)/);
    invalid('name="a"\ncpu_weight=0', /key "cpu_weight" must be between 1 and 65535/);
    invalid('name="a"\ncpu_weight=65536', /key "cpu_weight" must be between 1 and 65535/);
    invalid('name="a"\nvcpus=2\ncap=201', /^guest\.cfg:3:5: key "cap" must be between 0 and 200 \(got 201\)/);
    assert.equal(cfg('name="a"\nvcpus=1\nmaxvcpus=2\ncap=200').cap, 200);
    assert.equal(cfg('name="a"\ncap=0').cap, 0);
    assert.equal(cfg('name="a"\nmemory=256\nmaxmem=256').maxmem, 256);
  });

  it('requires a valid name', () => {
    invalid('memory = 128', /^guest\.cfg: the mandatory key "name" is missing/);
    invalid('name = "bad name"', /^guest\.cfg:1:8: invalid domain name "bad name"/);
    invalid('name = ""', /^guest\.cfg:1:8: invalid domain name ""/);
    invalid(`name = "${'x'.repeat(65)}"`, /invalid domain name/);
    invalid('name = "123"', /all digits/);
    assert.equal(cfg('name = "web-01.prod_x"').name, 'web-01.prod_x');
  });

  it('validates lifecycle actions', () => {
    const c = cfg('name="a"\non_poweroff="preserve"\non_reboot="rename-restart"\non_crash="coredump-restart"');
    assert.deepEqual([c.onPoweroff, c.onReboot, c.onCrash], ['preserve', 'rename-restart', 'coredump-restart']);
    invalid('name="a"\non_reboot="reboot"', /^guest\.cfg:2:11: key "on_reboot": unknown action "reboot" \(destroy, restart/);
  });

  it('reads cpus as a string, a number or a list', () => {
    assert.equal(cfg('name="a"\ncpus="0-3, 5,^1"').cpus, '0-3,5,^1');
    assert.equal(cfg('name="a"\ncpus=2').cpus, '2');
    assert.equal(cfg('name="a"\ncpus=[0, 1, "4-5"]').cpus, '0,1,4-5');
    assert.equal(cfg('name="a"\ncpus="all"').cpus, undefined);
    assert.equal(cfg('name="a"\ncpus="all,^0"').cpus, 'all,^0');
    invalid('name="a"\ncpus="0-"', /^guest\.cfg:2:6: invalid CPU list "0-"/);
    invalid('name="a"\ncpus=[]', /^guest\.cfg:2:6: key "cpus" is an empty list/);
    invalid('name="a"\ncpus=[[1]]', /^guest\.cfg:2:7: key "cpus" expects a string or a list of CPUs/);
    invalid('name="a"\ncpus="^2"', /selects none/);
  });

  it('validates the uuid', () => {
    invalid('name="a"\nuuid="1234"', /^guest\.cfg:2:6: invalid uuid "1234"/);
  });

  it('derives the hostname from the kernel command line', () => {
    assert.equal(cfg('name="a"\nextra="quiet hostname=web2"').hostname, 'web2');
    assert.equal(cfg('name="a"\nextra="hostname=a xeno.hostname=b"').hostname, 'b');
    assert.equal(cfg('name="a"\nextra="hostname=a"\ncmdline="hostname=c"').hostname, 'c');
    assert.equal(cfg('name="a"\nextra="hostname=a"\ncmdline="quiet"').hostname, undefined);
    assert.equal(cfg('name="a"\nhostname="h"\nextra="hostname=a"').hostname, 'h');
    assert.equal(cfg('name="a"\nextra="quiet"').hostname, undefined);
    const w: string[] = [];
    assert.equal(cfg('name="a"\nextra="hostname=-bad-"', w).hostname, undefined);
    assert.deepEqual(w, ['guest.cfg:2:7: warning: ignoring invalid hostname "-bad-" in the kernel command line']);
    invalid('name="a"\nhostname="no spaces"', /^guest\.cfg:2:10: invalid hostname/);
  });

  it('prefixes disk and vif errors with the position of the list element', () => {
    invalid(
      'name = "a"\ndisk = [ "/a,,xvda",\n         "/b,foo,xvdb" ]',
      /^guest\.cfg:3:10: invalid disk "\/b,foo,xvdb": unknown format "foo"/,
    );
    invalid('name = "a"\nvif = [ "", "colour=red" ]', /^guest\.cfg:2:13: invalid vif "colour=red": unknown key "colour"/);
    invalid('name = "a"\ndisk = [ "/a,,xvda", "/b,,xvda" ]', /^guest\.cfg:2:22: disk vdev "xvda" is already used by disk 0/);
    invalid(
      'name = "a"\nvif = [ "mac=00:16:3e:00:00:01", "", "mac=00:16:3E:00:00:01" ]',
      /^guest\.cfg:2:38: vif mac "00:16:3e:00:00:01" is already used by vif 0/,
    );
    invalid('name = "a"\nvif = [ "vifname=v1", "vifname=v1" ]', /vif vifname "v1" is already used by vif 0/);
  });

  it('numbers vifs by their index', () => {
    const c = cfg("name='a'\nvif = [ 'bridge=br0', '', 'bridge=br1' ]");
    assert.deepEqual(
      c.vifs.map((v) => [v.devid, v.bridge]),
      [
        [0, 'br0'],
        [1, undefined],
        [2, 'br1'],
      ],
    );
  });

  it('warns about unknown keys like xl, and once about each accepted key that has no effect', () => {
    const w: string[] = [];
    const c = cfg('name = "a"\nacpi = 1\napic = 1\n  vfb = [ "vnc=1" ]\ncpuid = "host"', w);
    assert.deepEqual(w, [
      `guest.cfg:2:1: warning: "acpi" has no effect: QEMU's pc machine always has ACPI`,
      `guest.cfg:3:1: warning: "apic" has no effect: QEMU's pc machine always has an APIC`,
      'guest.cfg:5:1: warning: ignoring unknown key "cpuid"',
    ]);
    assert.deepEqual(c.vnc, { listen: '127.0.0.1' }, 'vfb vnc=1 is a VNC display on loopback');
  });

  it('reads VNC displays from vnc* keys and vfb entries, refuses one beyond loopback without a password, warns about sdl and ignored keys', () => {
    const hvm = 'name = "a"\ntype = "hvm"\ndisk = [ "/a,,xvda" ]\n';
    assert.deepEqual(cfg(`${hvm}vnc = 1\nvnclisten = "0.0.0.0"\nvncdisplay = 4\nvncpasswd = "s3cret"`).vnc, { listen: '0.0.0.0', display: 4, password: 's3cret' });
    assert.deepEqual(cfg(`${hvm}vfb = [ "vnc=1,vnclisten=::1,vncdisplay=2" ]`).vnc, { listen: '::1', display: 2 });
    invalid(`${hvm}vnc = 1\nvnclisten = "0.0.0.0"`, /^guest\.cfg:5:13: vnc\.password: a VNC display listening on 0\.0\.0\.0 \(beyond this host\) needs a password/);
    invalid(`${hvm}vnc = 1\nvncpasswd = "muchtoolong"`, /vnc\.password: must be 1 to 8 printable characters/);
    invalid(`${hvm}vnc = 1\nvnclisten = "127.0.0.1,share=ignore"`, /is not an IP address/);
    invalid(`${hvm}vnc = 1\nvncdisplay = "1,to=9"`, /vncdisplay: "1,to=9" is not a display number/);
    const w: string[] = [];
    const c = cfg(`${hvm}sdl = 1\nserial = "pty"\nvncdisplay = 3\nboot = "dc"`, w);
    assert.equal(c.vnc, undefined);
    assert.equal(c.boot, 'dc');
    assert.deepEqual(w, [
      'guest.cfg:4:7: warning: "sdl" has no effect: xenod has no screen; use vnc = 1',
      'guest.cfg:6:14: warning: "vncdisplay" has no effect without vnc = 1',
    ]);
    invalid(`${hvm}boot = "x"`, /key "boot": "x" is not a boot order/);
    const pv: string[] = [];
    assert.equal(cfg('name = "a"\nkernel = "/k"\nboot = "d"', pv).boot, undefined);
    assert.match(pv[0]!, /"boot" has no effect: only an hvm guest without a kernel/);
  });

  it('resolves relative paths against baseDir, rejects them without', () => {
    const text = 'name="a"\nkernel="k/vmlinuz"\nramdisk="/abs/initrd"\ndisk=["img/a.img,,xvda"]';
    const c = toDomainConfig(parseXlCfg(text, 'g.cfg'), 'g.cfg', () => {}, { baseDir: '/srv/vm' });
    assert.equal(c.kernel, '/srv/vm/k/vmlinuz');
    assert.equal(c.ramdisk, '/abs/initrd');
    assert.equal(c.disks[0]!.target, '/srv/vm/img/a.img');
    invalid(text, /^guest\.cfg:2:8: key "kernel": "k\/vmlinuz" is not an absolute path/);
    invalid('name="a"\nkernel=""', /key "kernel" is empty/);
  });
});

describe('applyOverrides', () => {
  it('replaces and adds entries', () => {
    const ast = parseXlCfg(XM_FILE, 'web.cfg');
    const c = toDomainConfig(
      applyOverrides(ast, ['memory=256', 'name="web2"', "vif=['bridge=br9']", 'vcpus = 2; maxvcpus = 3']),
      'web.cfg',
    );
    assert.equal(c.memory, 256);
    assert.equal(c.name, 'web2');
    assert.deepEqual(c.vifs, [{ devid: 0, bridge: 'br9' }]);
    assert.equal(c.vcpus, 2);
    assert.equal(c.maxvcpus, 3);
    // The input AST is untouched.
    assert.equal(toDomainConfig(ast, 'web.cfg').memory, 128);
  });

  it('reports errors at <command line> with the override number as the line', () => {
    const ast = parseXlCfg('name = "a"', 'a.cfg');
    assert.throws(() => applyOverrides(ast, ['memory=256', 'vcpus 2']), (e: unknown) => {
      assert.ok(e instanceof XenoError);
      assert.equal(e.code, 'CONFIG_SYNTAX');
      assert.match(e.message, /^<command line>:2:7: expected '=' after "vcpus"/);
      return true;
    });
    assert.throws(() => applyOverrides(ast, ['memory=512m']), /<command line>:1:8: invalid number '512m'/);
    assert.throws(() => applyOverrides(ast, ['']), /<command line>:1:1: override "" is not a key=value assignment/);
    const bad = applyOverrides(ast, ['memory="x"']);
    assert.throws(() => toDomainConfig(bad, 'a.cfg'), /^XenoError: <command line>:1:8: invalid memory size "x"/);
  });
});

describe('parseDomainConfigFile', () => {
  it('reads, parses and normalises a file, with overrides', () => {
    const dir = mkdtempSync(join(tmpdir(), 'xeno-cfg-'));
    try {
      const file = join(dir, 'web.cfg');
      writeFileSync(file, XM_FILE + 'colour = "blue"\n');
      const w: string[] = [];
      const c = parseDomainConfigFile(file, (m) => w.push(m));
      assert.equal(c.name, 'web');
      assert.deepEqual(w, [`${file}:26:1: warning: ignoring unknown key "colour"`]);
      assert.equal(parseDomainConfigFile(file, () => {}, { overrides: ['memory=64'] }).memory, 64);

      writeFileSync(file, 'name = "x"\nmemory = 128 * 2\n');
      assert.throws(() => parseDomainConfigFile(file), (e: unknown) => {
        assert.ok(e instanceof XenoError);
        assert.equal(e.code, 'CONFIG_SYNTAX');
        assert.equal(e.message.startsWith(`${file}:2:14: `), true);
        return true;
      });

      writeFileSync(file, 'name = "x"\ndisk = [ "rel.img,,xvda" ]\n');
      assert.equal(parseDomainConfigFile(file, () => {}, { baseDir: dir }).disks[0]!.target, join(dir, 'rel.img'));

      assert.throws(() => parseDomainConfigFile(join(dir, 'missing.cfg')), (e: unknown) => {
        assert.ok(e instanceof XenoError);
        assert.equal(e.code, 'NO_SUCH_FILE');
        return true;
      });
      assert.throws(() => parseDomainConfigFile(dir), (e: unknown) => e instanceof XenoError && e.code === 'CONFIG_INVALID');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('disk_cache', () => {
  it("sets the guest's default cache mode; an unknown mode is refused; xl.cfg output keeps it", () => {
    const c = cfg('name = "g"\nkernel = "/k"\ndisk_cache = "writethrough"\ndisk = [ "format=raw, vdev=xvda, cache=none, target=/a" ]\n');
    assert.equal(c.diskCache, 'writethrough');
    assert.equal(c.disks[0]!.cache, 'none');
    invalid('name = "g"\nkernel = "/k"\ndisk_cache = "fast"\n', /key "disk_cache": unknown cache mode "fast"/);
    assert.match(formatXlCfg(c), /disk_cache = "writethrough"/);
  });
});
