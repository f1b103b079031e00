/** Unit tests of the pure parts of host networking (no namespaces, no root needed). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { DomainConfig } from '../../model/domain-config.js';
import { Dnsmasq } from './dnsmasq.js';
import { sanitizeInstance, tableName, vifChainName } from './firewall.js';
import { nsArgv, routeWords, sysctlPath } from './ip.js';
import { cidrString, intToIp, ipToInt, natSlot, netmask, parseCidr4, slotForGuestIp } from './ipv4.js';
import { defaultMac, vifMac } from './mac.js';
import { allocateNatSlot, natGuestNet, preferredNatSlot } from './nat-mode.js';
import { nicModel, specOf, vifModeOf, withGuestArgs } from './network-manager.js';
import { routeGuestNet } from './route-mode.js';
import { ifbNameFor, ownerAlias, parseOwnerAlias, shapingFor } from './vif.js';

describe('mac', () => {
  it('is in the Xen OUI, stable per (name, devid), with the fourth octet below 0x80', () => {
    const a = defaultMac('web1', 0);
    assert.match(a, /^00:16:3e:[0-7][0-9a-f]:[0-9a-f]{2}:[0-9a-f]{2}$/);
    assert.equal(defaultMac('web1', 0), a);
    assert.notEqual(defaultMac('web1', 1), a);
    assert.notEqual(defaultMac('web2', 0), a);
    for (let i = 0; i < 200; i++) assert.ok(parseInt(defaultMac(`g${i}`, i).split(':')[3]!, 16) < 0x80);
  });
  it('mac= wins', () => {
    assert.equal(vifMac('web1', 0, '00:16:3E:AA:BB:CC'), '00:16:3e:aa:bb:cc');
  });
});

describe('ipv4', () => {
  it('converts and masks', () => {
    assert.equal(intToIp(ipToInt('10.1.2.3')), '10.1.2.3');
    assert.equal(netmask(30), '255.255.255.252');
    assert.equal(netmask(16), '255.255.0.0');
    assert.equal(cidrString(parseCidr4('10.0.3.7/16')), '10.0.0.0/16');
  });
  it('cuts the NAT pool into /30 slots, the first kept free', () => {
    const pool = parseCidr4('10.0.0.0/16');
    assert.deepEqual(natSlot(pool, 1), { index: 1, network: '10.0.0.4', host: '10.0.0.5', guest: '10.0.0.6', prefix: 30 });
    assert.throws(() => natSlot(pool, 0));
    assert.deepEqual(slotForGuestIp(pool, '10.0.0.10'), { index: 2, network: '10.0.0.8', host: '10.0.0.9', guest: '10.0.0.10', prefix: 30 });
    assert.equal(slotForGuestIp(pool, '10.0.0.9')!.host, '10.0.0.10', 'the host takes the other usable address');
    assert.equal(slotForGuestIp(pool, '192.168.1.1'), undefined);
    assert.throws(() => slotForGuestIp(pool, '10.0.0.8'), /network or broadcast/);
    assert.throws(() => slotForGuestIp(pool, '10.0.0.2'), /reserved/);
  });
  it('allocates the preferred slot, the next free one, or the one ip= names', () => {
    const used = new Map([[1, 'a vif 0'], [2, 'b vif 0']]);
    assert.equal(allocateNatSlot('10.0.0.0/16', undefined, used, 'c vif 0').index, 3);
    assert.equal(allocateNatSlot('10.0.0.0/16', undefined, used, 'c vif 0', 77).index, 77);
    assert.equal(allocateNatSlot('10.0.0.0/16', undefined, used, 'c vif 0', 2).index, 3);
    assert.equal(allocateNatSlot('10.0.0.0/29', undefined, new Map(), 'c vif 0', 1).index, 1);
    assert.equal(allocateNatSlot('10.0.0.0/16', undefined, used, 'a vif 0').index, 1, 'an owner keeps its slot');
    assert.throws(() => allocateNatSlot('10.0.0.0/16', '10.0.0.6', used, 'c vif 0'), /already used by a vif 0/);
    assert.throws(() => allocateNatSlot('10.0.0.0/16', '172.16.0.2', used, 'c vif 0'), /outside the NAT subnet/);
    assert.throws(() => allocateNatSlot('10.9.9.0/29', undefined, new Map([[1, 'x']]), 'y'), /no free/);
    const p = preferredNatSlot('10.0.0.0/16', 'web1', 0);
    assert.equal(preferredNatSlot('10.0.0.0/16', 'web1', 0), p, 'stable per (name, devid)');
    assert.ok(p >= 1 && p < 16384);
    assert.notEqual(preferredNatSlot('10.0.0.0/16', 'web2', 0), p);
  });
  it('gives the guest its command-line network', () => {
    const s = natSlot(parseCidr4('10.0.0.0/16'), 1);
    assert.equal(natGuestNet(s, true), '10.0.0.6/30:10.0.0.5');
    assert.equal(natGuestNet(s, false), 'dhcp');
    assert.equal(routeGuestNet('192.168.1.50', { dev: 'eth0', address: '192.168.1.1', prefix: 24 }), '192.168.1.50/24:192.168.1.1');
    assert.equal(routeGuestNet('203.0.113.5', { dev: 'eth0', address: '192.168.1.1', prefix: 24 }), '203.0.113.5/32');
  });
});

describe('ip helpers', () => {
  it('maps sysctl keys to /proc/sys paths, keeping dots in device names', () => {
    assert.equal(sysctlPath('net.ipv4.ip_forward'), '/proc/sys/net/ipv4/ip_forward');
    assert.equal(sysctlPath('net.ipv4.conf.vif3.0.proxy_arp'), '/proc/sys/net/ipv4/conf/vif3.0/proxy_arp');
  });
  it('wraps argv for a namespace', () => {
    assert.deepEqual(nsArgv(['ip', 'link'], 'ns1'), ['ip', 'netns', 'exec', 'ns1', 'ip', 'link']);
    assert.deepEqual(nsArgv(['ip', 'link']), ['ip', 'link']);
  });
  it('rewrites a listed route for another device', () => {
    assert.deepEqual(routeWords({ dst: 'default', gateway: '10.1.1.1', dev: 'eth0', protocol: 'dhcp', metric: 100 }, 'xenbr0'), [
      'default', 'via', '10.1.1.1', 'dev', 'xenbr0', 'proto', 'dhcp', 'metric', '100',
    ]);
  });
});

describe('names', () => {
  it('derives per-instance names', () => {
    assert.equal(tableName('host-a.1'), 'xeno_host_a_1');
    assert.equal(sanitizeInstance('a b'), 'a_b');
    assert.equal(ownerAlias('i1', 'vif', 3, 0), 'xeno:i1:vif:3:0');
    assert.deepEqual(parseOwnerAlias('xeno:i1:ifb:3:1'), { instance: 'i1', kind: 'ifb', domid: 3, devid: 1 });
    assert.equal(parseOwnerAlias('something else'), undefined);
    assert.equal(ifbNameFor('vif12.3'), 'ifb12.3');
    assert.equal(ifbNameFor('web-front'), 'ifb-web-front');
  });
  it('refuses vif names that would clash with xeno chains', () => {
    assert.equal(vifChainName('vif3.0'), 'vif3.0');
    assert.throws(() => vifChainName('forward'), /reserved/);
    assert.throws(() => vifChainName('from_x'), /reserved/);
    assert.throws(() => vifChainName('0abc'), /start with a letter/);
  });
  it('maps scripts and models', () => {
    assert.equal(vifModeOf(undefined, 'vif-nat'), 'nat');
    assert.equal(vifModeOf('/etc/xen/scripts/vif-route', 'vif-bridge'), 'route');
    assert.throws(() => vifModeOf('vif-openvswitch', 'vif-bridge'), /unknown vif script/);
    assert.equal(nicModel(undefined), undefined);
    assert.equal(nicModel('virtio'), undefined);
    assert.equal(nicModel('e1000'), 'e1000');
  });
});

describe('rate', () => {
  it("shapes with one interval's credit as the bucket", () => {
    assert.deepEqual(shapingFor('10Mb/s'), { bytesPerSec: 1_250_000, burstBytes: 62_500 });
    assert.deepEqual(shapingFor('1MB/s@20ms'), { bytesPerSec: 1_000_000, burstBytes: 20_000 });
    assert.equal(shapingFor('100Kb/s').burstBytes, 4 * 1514, 'at least a few frames');
  });
});

describe('guest command line', () => {
  const base: DomainConfig = {
    name: 'g', type: 'pv', memory: 128, maxmem: 128, vcpus: 1, maxvcpus: 1, kernel: '/k', extra: 'quiet', disks: [], vifs: [],
    onPoweroff: 'destroy', onReboot: 'restart', onCrash: 'destroy',
  };
  it('appends xeno.net= to extra, or to an explicit cmdline', () => {
    assert.equal(withGuestArgs(base, ['xeno.net=eth0:dhcp']).extra, 'quiet xeno.net=eth0:dhcp');
    assert.equal(withGuestArgs({ ...base, cmdline: 'console=ttyS0' }, ['xeno.net=eth0:dhcp']).cmdline, 'console=ttyS0 xeno.net=eth0:dhcp');
  });
  it("leaves out interfaces the user configured", () => {
    const c = { ...base, extra: 'quiet xeno.net=eth0:192.0.2.5/24' };
    const out = withGuestArgs(c, ['xeno.net=eth0:dhcp', 'xeno.net=eth1:dhcp']);
    assert.equal(out.extra, 'quiet xeno.net=eth0:192.0.2.5/24 xeno.net=eth1:dhcp');
    assert.equal(withGuestArgs(c, ['xeno.net=eth0:dhcp']), c);
  });
  it('re-plugs a recorded vif with the same spec', () => {
    assert.deepEqual(
      specOf({ domid: 3, devid: 1, name: 'g', ifname: 'vif3.1', mac: '00:16:3e:00:00:01', mode: 'nat', ips: ['10.0.0.6'], dhcp: true, slot: 1, rate: '1MB/s' }),
      { devid: 1, mac: '00:16:3e:00:00:01', script: 'vif-nat', vifname: 'vif3.1', rate: '1MB/s' },
    );
  });
});

describe('dnsmasq config', () => {
  it('serves only the NAT vifs, with static leases', () => {
    const conf = Dnsmasq.config(
      [{ ifname: 'vif3.0', mac: '00:16:3e:00:00:01', ip: '10.0.0.6', network: '10.0.0.4', prefix: 30 }],
      '/var/lib/xeno/network/dnsmasq.leases',
    );
    assert.match(conf, /^port=0$/m);
    assert.match(conf, /^bind-dynamic$/m);
    assert.match(conf, /^interface=vif3\.0$/m);
    assert.match(conf, /^dhcp-range=set:vif3\.0,10\.0\.0\.4,static,255\.255\.255\.252,12h$/m);
    assert.match(conf, /^dhcp-host=00:16:3e:00:00:01,10\.0\.0\.6,12h$/m);
    assert.doesNotMatch(conf, /except-interface|^interface=\*$/m);
  });
});

describe('CLI output', () => {
  it('prints network-list like xm, plus the backend', async () => {
    const { formatNetworkList, formatRules } = await import('../../cli/commands/network.js');
    const text = formatNetworkList([
      {
        domid: 3, name: 'web', vifs: [
          { devid: 0, ifname: 'vif3.0', mac: '00:16:3e:01:02:03', mode: 'nat', ips: ['10.0.0.6'], dhcp: true, model: 'virtio-net', rate: '10Mb/s' },
          { devid: 1, ifname: 'vif3.1', mac: '00:16:3e:01:02:04', mode: 'bridge', ips: [], dhcp: true, model: 'virtio-net' },
        ],
      },
    ]);
    const lines = text.trim().split('\n');
    assert.match(lines[0]!, /^Idx\s+BE\s+Mac Addr\.\s+handle\s+state\s+vif\s+mode\s+IP\s+rate$/);
    assert.match(lines[1]!, /^0\s+0\s+00:16:3e:01:02:03\s+0\s+4\s+vif3\.0\s+nat\s+10\.0\.0\.6 \(dhcp\)\s+10Mb\/s$/);
    assert.match(lines[2]!, /^1\s+0\s+00:16:3e:01:02:04\s+1\s+4\s+vif3\.1\s+bridge\s+dhcp\s+-$/);
    const rules = formatRules('web', [{ devid: 0, ifname: 'vif3.0', mode: 'nat', family: 'inet', table: 'xeno_main', chain: 'vif3.0', rules: ['tcp dport 22 drop'] }]);
    assert.match(rules, /chain vif3\.0 in table inet xeno_main/);
    assert.match(rules, /nft add rule inet xeno_main vif3\.0/);
    assert.match(rules, /^  tcp dport 22 drop$/m);
    assert.equal(formatRules('web', []), 'web has no vif\n');
  });
});
