/**
 * The NetworkManager on its own, in private namespaces and without guests (vif taps exist without
 * a QEMU): idempotent set-up and re-plugging, the explicit stop putting the physical interface back,
 * a changed network-script undoing the earlier set-up, two daemons' instances side by side, and
 * failed plugs leaving nothing behind. Guest traffic per mode is test/network.test.ts's job.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { NetworkManager } from '../src/host/network/network-manager.js';
import { defaultDaemonConfig, type DaemonConfig } from '../src/model/daemon-config.js';
import { NetWorld } from './net/world.js';

function cfg(w: NetWorld, script: string, extra: Partial<DaemonConfig> = {}): DaemonConfig {
  const mode = script.split(' ')[0]!.replace('network-', '');
  return { ...defaultDaemonConfig(), stateDir: w.dir, networkScript: script, vifScript: `vif-${mode}`, ...extra };
}

describe('NetworkManager without guests', { timeout: 120_000 }, () => {
  let w: NetWorld;
  const managers: NetworkManager[] = [];
  /** One state dir per instance id, as each daemon has its own. */
  const make = (config: DaemonConfig, instanceId: string) => {
    const stateDir = `${w.dir}/${instanceId}`;
    const nm = new NetworkManager({ config, instanceId, stateDir, netns: w.host });
    managers.push(nm);
    return nm;
  };

  before(async () => {
    w = await NetWorld.create('m');
  });
  after(async () => {
    for (const m of managers) m.close();
    await w?.destroy();
  });

  it('bridge: set-up, plug and re-plug are idempotent; the explicit stop restores the NIC', async () => {
    const clean = await w.hostDump();
    const nm = make(cfg(w, 'network-bridge netdev=eth0'), 'b1');
    await nm.startHost();
    const up = await w.hostDump();
    assert.match(up, /xenbr0\s+UP\s+192\.168\.100\.1\/24/);
    assert.match(up, /default via 192\.168\.100\.2 dev xenbr0/);
    await nm.startHost();
    assert.equal(await w.hostDump(), up);
    const p = await nm.plug(7, 'web', { devid: 0, ip: '192.168.100.70', rate: '10Mb/s' });
    assert.deepEqual(p.nic, { devid: 0, ifname: 'vif7.0', mac: p.nic.mac, model: undefined });
    assert.equal(p.guestArg, 'xeno.net=eth0:192.168.100.70/24:192.168.100.2');
    const plugged = await w.hostDump();
    assert.match(plugged, /vif7\.0\s+\S+\s+fe:ff:ff:ff:ff:ff/);
    assert.match(plugged, /ifb7\.0/);
    assert.match((await w.run(w.host, ['ip', '-d', 'link', 'show', 'vif7.0'])).stdout, /master xenbr0/);
    assert.match((await w.run(w.host, ['tc', 'qdisc', 'show', 'dev', 'ifb7.0'])).stdout, /tbf .*rate 10Mbit/);
    await nm.plug(7, 'web', { devid: 0, ip: '192.168.100.70', rate: '10Mb/s' });
    await nm.startHost();
    assert.equal(await w.hostDump(), plugged, 're-adoption duplicates nothing');
    await nm.plug(7, 'web', { devid: 0, ip: '192.168.100.70' });
    assert.doesNotMatch(await w.hostDump(), /ifb7\.0/, 'a vif re-plugged without rate= loses its shaping');
    await nm.unplug(7);
    assert.match(await w.hostDump(), /xenbr0/, 'the bridge holding the host address stays without vifs');
    await nm.stopHost();
    assert.equal(await w.hostDump(), clean, 'the explicit stop leaves the host as it was');
  });

  it('bridge without netdev=: the physical NIC keeps its address and routes, and joins no bridge', async () => {
    const nicBefore = (await w.run(w.host, ['ip', '-d', 'link', 'show', 'eth0'])).stdout;
    const addrBefore = (await w.run(w.host, ['ip', '-br', '-4', 'addr', 'show', 'eth0'])).stdout;
    const routesBefore = (await w.run(w.host, ['ip', '-4', 'route'])).stdout;
    const nm = make(cfg(w, 'network-bridge'), 'n1');
    await nm.startHost();
    await nm.plug(8, 'web', { devid: 0 });
    const dump = await w.hostDump();
    assert.match(dump, /^xenbr0\s/m, 'the bridge exists for the vifs');
    assert.match((await w.run(w.host, ['ip', '-d', 'link', 'show', 'vif8.0'])).stdout, /master xenbr0/);
    const nic = (await w.run(w.host, ['ip', '-d', 'link', 'show', 'eth0'])).stdout;
    assert.doesNotMatch(nic, /master/, 'eth0 is not enslaved');
    assert.equal(nic.replace(/\s+/g, ' '), nicBefore.replace(/\s+/g, ' '), 'eth0 untouched');
    assert.equal((await w.run(w.host, ['ip', '-br', '-4', 'addr', 'show', 'eth0'])).stdout, addrBefore, 'eth0 keeps its address');
    assert.doesNotMatch(dump, /xenbr0\s+\S+\s+192\.168\.100\.1/, 'the bridge did not take the address');
    assert.equal((await w.run(w.host, ['ip', '-4', 'route'])).stdout, routesBefore, 'the routes are as they were');
    assert.equal(await w.ping(w.host, '192.168.100.2', 1), true, 'the host still reaches the outside through eth0');
    await nm.unplug(8);
    await nm.stopHost();
    assert.equal((await w.run(w.host, ['ip', '-br', '-4', 'addr', 'show', 'eth0'])).stdout, addrBefore);
  });

  it('a changed network-script undoes the earlier set-up first', async () => {
    const clean = await w.hostDump();
    await make(cfg(w, 'network-bridge netdev=eth0 bridge=br9'), 'c1').startHost();
    assert.match(await w.hostDump(), /br9\s+UP\s+192\.168\.100\.1\/24/);
    const nat = make(cfg(w, 'network-nat'), 'c1');
    assert.equal(await nat.resume(), true, 'an earlier set-up is re-adopted (here: replaced)');
    const dump = await w.hostDump();
    assert.doesNotMatch(dump, /br9/);
    assert.match(dump, /eth0@\w+\s+UP\s+192\.168\.100\.1\/24/);
    assert.match(dump, /default via 192\.168\.100\.2 dev eth0/);
    assert.match(dump, /table inet xeno_c1/);
    await nat.stopHost();
    assert.equal(await w.hostDump(), clean);
    assert.equal(await make(cfg(w, 'network-nat'), 'c1').resume(), false, 'nothing to re-adopt: nothing is touched');
    assert.equal(await w.hostDump(), clean);
  });

  it('two instances in one namespace keep to their own tables, devices and dnsmasq', async () => {
    const a = make(cfg(w, 'network-nat', { natSubnet: '10.0.0.0/16' }), 'ia');
    const b = make(cfg(w, 'network-nat', { natSubnet: '10.1.0.0/16' }), 'ib');
    const pa = await a.plug(1, 'x', { devid: 0 });
    await assert.rejects(b.plug(1, 'y', { devid: 0 }), /vif1\.0 already exists and is not this vif's/);
    const pb = await b.plug(2, 'y', { devid: 0, ip: '10.1.0.6' });
    assert.equal(pa.guestArg, 'xeno.net=eth0:dhcp');
    assert.equal(pb.guestArg, 'xeno.net=eth0:10.1.0.6/30:10.1.0.5');
    const dump = await w.hostDump();
    assert.match(dump, /table inet xeno_ia/);
    assert.match(dump, /table inet xeno_ib/);
    const pidA = a.dnsmasq.pid();
    const pidB = b.dnsmasq.pid();
    assert.ok(pidA && pidB && pidA !== pidB, 'one dnsmasq each');
    await a.unplug(1);
    assert.equal(a.dnsmasq.pid(), undefined);
    assert.equal(b.dnsmasq.pid(), pidB, "b's dnsmasq untouched");
    const after = await w.hostDump();
    assert.doesNotMatch(after, /xeno_ia|vif1\.0/, "a's set-up is gone once it has no vif");
    assert.match(after, /vif2\.0\s+\w+\s+10\.1\.0\.5\/30/);
    assert.equal((await w.run(w.host, ['cat', '/proc/sys/net/ipv4/ip_forward'])).stdout.trim(), '1', 'still needed by b');
    await b.unplug(2);
    assert.doesNotMatch(await w.hostDump(), /xeno_|vif\d/);
    // b found forwarding on (a had set it) and leaves it so: each instance restores what it found.
    await w.run(w.host, ['sysctl', '-qw', 'net.ipv4.ip_forward=0']);
  });

  it('a failed plug leaves nothing behind', async () => {
    const clean = await w.hostDump();
    const nat = make(cfg(w, 'network-nat'), 'f1');
    await assert.rejects(nat.plug(3, 'z', { devid: 0, ip: '172.16.0.5' }), /outside the NAT subnet/);
    await assert.rejects(nat.plug(3, 'z', { devid: 0, vifname: 'forward' }), /reserved/);
    const route = make(cfg(w, 'network-route netdev=eth0'), 'f2');
    await assert.rejects(route.plug(3, 'z', { devid: 0 }), /vif-route needs the guest's address/);
    const br = make(cfg(w, 'network-bridge'), 'f3');
    await assert.rejects(br.plug(3, 'z', { devid: 0, bridge: 'nosuchbr' }), /bridge nosuchbr does not exist/);
    await br.unplug(3);
    assert.equal(await w.hostDump(), clean);
  });
});
