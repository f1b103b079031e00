import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { XenoError } from '../common/errors.js';
import { formatVifSpec, parseRate, parseVifSpec } from './vif-spec.js';

function invalid(fn: () => unknown, expected: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof XenoError);
    assert.equal(e.code, 'CONFIG_INVALID');
    assert.match(e.message, expected);
    return true;
  });
}

describe('parseVifSpec', () => {
  it('accepts the empty spec (all defaults)', () => {
    assert.deepEqual(parseVifSpec('', 0), { devid: 0 });
    assert.deepEqual(parseVifSpec('  ', 3), { devid: 3 });
  });

  it('reads every key', () => {
    const v = parseVifSpec(
      'mac=00:16:3E:01:02:0a, bridge=xenbr0, ip=10.0.0.2 10.0.0.3, script=/etc/xen/scripts/vif-nat, ' +
        'vifname=web0, gatewaydev=eth0, rate=10Mb/s@20ms, model=e1000, type=ioemu, mtu=9000',
      2,
    );
    assert.deepEqual(v, {
      devid: 2,
      mac: '00:16:3e:01:02:0a',
      bridge: 'xenbr0',
      ip: '10.0.0.2 10.0.0.3',
      script: 'vif-nat',
      vifname: 'web0',
      gatewaydev: 'eth0',
      rate: '10Mb/s@20ms',
      model: 'e1000',
      type: 'ioemu',
      mtu: 9000,
    });
  });

  it('tolerates spaces, empty items and repeated keys (last wins)', () => {
    assert.deepEqual(parseVifSpec(' bridge = br0 ,, bridge=br1,', 0), { devid: 0, bridge: 'br1' });
    assert.deepEqual(parseVifSpec('script=vif-route,ip=10.1.1.1   ', 1), {
      devid: 1,
      script: 'vif-route',
      ip: '10.1.1.1',
    });
    assert.equal(parseVifSpec('ip=fe80::1', 0).ip, 'fe80::1');
  });

  it('rejects bad values and unknown keys', () => {
    invalid(() => parseVifSpec('mac=00:16:3e:01:02', 0), /invalid vif "mac=00:16:3e:01:02": invalid mac/);
    invalid(() => parseVifSpec('mac=00:16:3e:01:02:0g', 0), /invalid mac/);
    invalid(() => parseVifSpec('mac=00-16-3e-01-02-03', 0), /invalid mac/);
    invalid(() => parseVifSpec('mac=01:16:3e:01:02:03', 0), /multicast/);
    invalid(() => parseVifSpec('colour=blue', 0), /unknown key "colour"/);
    invalid(() => parseVifSpec('bridge', 0), /"bridge" is not key=value/);
    invalid(() => parseVifSpec('bridge=a-very-long-bridge-name', 0), /invalid bridge/);
    invalid(() => parseVifSpec('vifname=a b', 0), /invalid vifname/);
    invalid(() => parseVifSpec('ip=10.0.0.300', 0), /invalid ip address "10\.0\.0\.300"/);
    invalid(() => parseVifSpec('ip=', 0), /ip is empty/);
    invalid(() => parseVifSpec('script=vif-openvswitch', 0), /unknown script "vif-openvswitch"/);
    invalid(() => parseVifSpec('rate=10Mb', 0), /invalid rate "10Mb"/);
    invalid(() => parseVifSpec('type=pci', 0), /unknown type "pci"/);
    invalid(() => parseVifSpec('mtu=big', 0), /mtu "big" is not an integer/);
    invalid(() => parseVifSpec('mtu=10', 0), /mtu 10 is out of range/);
    invalid(() => parseVifSpec('model=e1000;rm', 0), /invalid model/);
  });

  it('formats to key=value text that reads back the same', () => {
    const specs = ['', 'bridge=xenbr0', 'mac=00:16:3e:aa:bb:cc,ip=10.0.0.1 10.0.0.2,rate=1MB/s,mtu=1400,script=vif-nat'];
    specs.forEach((s, i) => {
      const v = parseVifSpec(s, i);
      assert.deepEqual(parseVifSpec(formatVifSpec(v), i), v);
    });
    assert.equal(formatVifSpec({ devid: 0, bridge: 'br0', mac: '00:16:3e:00:00:01' }), 'mac=00:16:3e:00:00:01, bridge=br0');
  });
});

describe('parseRate', () => {
  it('converts every unit to bytes per second', () => {
    const cases: Array<[string, number]> = [
      ['100B/s', 100],
      ['800b/s', 100],
      ['5KB/s', 5000],
      ['8Kb/s', 1000],
      ['1MB/s', 1_000_000],
      ['10Mb/s', 1_250_000],
      ['2GB/s', 2_000_000_000],
      ['1Gb/s', 125_000_000],
    ];
    for (const [rate, bytes] of cases) assert.deepEqual(parseRate(rate), { bytesPerSec: bytes, intervalUs: 50_000 }, rate);
  });

  it('reads the optional interval', () => {
    assert.deepEqual(parseRate('1MB/s@20ms'), { bytesPerSec: 1_000_000, intervalUs: 20_000 });
    assert.deepEqual(parseRate('1MB/s@500us'), { bytesPerSec: 1_000_000, intervalUs: 500 });
    assert.deepEqual(parseRate('1MB/s@1s'), { bytesPerSec: 1_000_000, intervalUs: 1_000_000 });
  });

  it('rejects malformed rates', () => {
    for (const bad of ['', '10', '10Mb', '10 Mb/s', '10mb/s', '10MB/m', '1.5MB/s', '10MB/s@', '10MB/s@20', '10MB/s@20min', '-1MB/s']) {
      invalid(() => parseRate(bad), /invalid rate/);
    }
    invalid(() => parseRate('0MB/s'), /less than one byte per second/);
    invalid(() => parseRate('4b/s'), /less than one byte per second/);
    invalid(() => parseRate('1MB/s@0ms'), /interval must not be zero/);
    invalid(() => parseRate('1MB/s@7200s'), /longer than an hour/);
  });
});
