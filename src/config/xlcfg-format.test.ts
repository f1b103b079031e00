import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { DomainConfig } from '../model/domain-config.js';
import { toDomainConfig } from './domain-config.js';
import { formatXlCfg, quoteXlString } from './xlcfg-format.js';
import { parseXlCfg } from './xlcfg-parser.js';

function roundTrip(c: DomainConfig): DomainConfig {
  const warnings: string[] = [];
  const back = toDomainConfig(parseXlCfg(formatXlCfg(c), 'formatted.cfg'), 'formatted.cfg', (m) => warnings.push(m));
  assert.deepEqual(warnings, []);
  return back;
}

const MINIMAL: DomainConfig = {
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
};

const FULL: DomainConfig = {
  name: 'db01',
  uuid: '4dde3a2c-8b61-4c4b-9e2b-1c2a3f4e5d6c',
  type: 'pv',
  memory: 1024,
  maxmem: 4096,
  vcpus: 2,
  maxvcpus: 8,
  cpus: '0-3,5,^1',
  cpuWeight: 512,
  cap: 0,
  kernel: '/srv/xen/vmlinuz',
  ramdisk: '/srv/xen/initrd.img',
  root: '/dev/xvda1 ro',
  extra: 'console=hvc0 quiet msg="it\'s \\"quoted\\""\ttab',
  cmdline: 'root=/dev/xvda1 hostname=db01',
  hostname: 'db01',
  disks: [
    { target: '/dev/vg/db01', format: 'raw', vdev: 'xvda', access: 'rw', devtype: 'disk' },
    { target: '/srv/data, with comma.qcow2', format: 'qcow2', vdev: 'xvdb', access: 'ro', devtype: 'disk' },
    { target: '/srv/iso/tools.iso', format: 'raw', vdev: 'hdc', access: 'ro', devtype: 'cdrom' },
    { target: '', format: 'raw', vdev: 'hdd', access: 'ro', devtype: 'cdrom' },
  ],
  vifs: [
    { devid: 0 },
    {
      devid: 1,
      mac: '00:16:3e:01:02:03',
      bridge: 'xenbr1',
      ip: '10.0.0.5 10.0.0.6',
      script: 'vif-route',
      vifname: 'db01-eth1',
      gatewaydev: 'eth0',
      rate: '1MB/s@20ms',
      model: 'e1000',
      type: 'ioemu',
      mtu: 1400,
    },
  ],
  onPoweroff: 'preserve',
  onReboot: 'rename-restart',
  onCrash: 'coredump-destroy',
};

describe('formatXlCfg', () => {
  it('round-trips a minimal config', () => {
    assert.deepEqual(roundTrip(MINIMAL), MINIMAL);
  });

  it('round-trips a config using every field', () => {
    assert.deepEqual(roundTrip(FULL), FULL);
  });

  it('round-trips a parsed xm file and a pvh guest', () => {
    const xm = toDomainConfig(
      parseXlCfg(
        "kernel='/boot/vmlinuz'\nmemory=128\nname='web'\nvif=['']\ndisk=['file:/srv/web.img,xvda,w','phy:sdb1,sdb1,r']\nroot='/dev/xvda1 ro'\nextra='hostname=web'",
      ),
    );
    assert.deepEqual(roundTrip(xm), xm);
    const pvh: DomainConfig = { ...MINIMAL, name: 'p', type: 'pvh', kernel: '/k', vcpus: 4, maxvcpus: 4, cap: 400 };
    assert.deepEqual(roundTrip(pvh), pvh);
  });

  it('writes readable xl.cfg with a header and keyword disks', () => {
    const text = formatXlCfg(FULL);
    assert.match(text, /^# xl\.cfg\(5\) configuration of domain db01/);
    assert.match(text, /\nname = "db01"\n/);
    assert.match(text, /\nmemory = 1024\n/);
    assert.match(text, /\n {4}"format=raw, vdev=xvda, access=rw, target=\/dev\/vg\/db01",\n/);
    assert.match(text, /\n {4}"format=raw, vdev=hdc, access=ro, devtype=cdrom, target=\/srv\/iso\/tools\.iso",\n/);
    assert.match(text, /\n {4}"",\n/);
    assert.match(text, /\n {4}"mac=00:16:3e:01:02:03, bridge=xenbr1, ip=10\.0\.0\.5 10\.0\.0\.6, script=vif-route/);
    assert.match(formatXlCfg(MINIMAL), /\ndisk = \[ \]\nvif = \[ \]\n$/);
  });

  it('quotes strings with escapes the lexer reads back', () => {
    for (const s of ['plain', 'a"b', "a'b", 'back\\slash', 'nl\nx', 'tab\tx', 'cr\rx', 'ctl\x01\x7f', 'ünï €', '# not a comment']) {
      const ast = parseXlCfg(`x = ${quoteXlString(s)}`);
      assert.equal(ast.entries[0]!.value.kind === 'string' && ast.entries[0]!.value.value, s);
    }
  });
});
