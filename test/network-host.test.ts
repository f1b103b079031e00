/**
 * The NetworkManager on its own, in private namespaces, with real guests started directly from
 * xeno's QEMU argv (no daemon): per mode, the host-wide setup and its undoing, idempotent
 * re-adoption, per-vif backends, traffic, the admin chain, anti-spoofing, rate= and cleanup.
 * (test/network.test.ts runs the same scenarios through xenod and the CLI.)
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { NetworkManager } from '../src/host/network/network-manager.js';
import { defaultDaemonConfig } from '../src/model/daemon-config.js';
import type { VifSpec } from '../src/model/domain-config.js';
import { DirectGuest } from './net/guest.js';
import { HOST_IP, NetWorld, OUTSIDE_IP } from './net/world.js';

const RATE_BYTES = 1024 * 1024;
const RATE = '4Mb/s';
const RATE_LIMIT = 500_000; // bytes/s

interface ModeCase {
  mode: 'bridge' | 'nat' | 'route';
  g1: VifSpec;
  g2: VifSpec;
  /** g1's address once up (nat+dhcp: read from the console). */
  g1Ip?: string;
  g2Ip: string;
}

const CASES: ModeCase[] = [
  {
    mode: 'bridge',
    g1: { devid: 0, ip: '192.168.100.10' },
    g2: { devid: 0, ip: '192.168.100.11', rate: RATE },
    g1Ip: '192.168.100.10',
    g2Ip: '192.168.100.11',
  },
  {
    mode: 'nat',
    g1: { devid: 0 },
    g2: { devid: 0, ip: '10.0.0.10', rate: RATE },
    g2Ip: '10.0.0.10',
  },
  {
    mode: 'route',
    g1: { devid: 0, ip: '192.168.100.50' },
    g2: { devid: 0, ip: '192.168.100.51', rate: RATE },
    g1Ip: '192.168.100.50',
    g2Ip: '192.168.100.51',
  },
];

/** XENO_NET_MODES=nat,route runs only those modes. */
const only = process.env.XENO_NET_MODES?.split(',');

for (const c of CASES.filter((k) => !only || only.includes(k.mode))) {
  describe(`network-${c.mode} (NetworkManager, guests without a daemon)`, { timeout: 300_000 }, () => {
    let w: NetWorld;
    let nm: NetworkManager;
    let g1: DirectGuest;
    let g2: DirectGuest;
    let g1Ip = c.g1Ip ?? '';
    const instance = `t${c.mode}`;

    before(async () => {
      w = await NetWorld.create(c.mode.slice(0, 1));
      const config = {
        ...defaultDaemonConfig(),
        stateDir: w.dir,
        networkScript: `network-${c.mode} netdev=eth0`,
        vifScript: `vif-${c.mode}`,
      };
      nm = new NetworkManager({ config, instanceId: instance, netns: w.host });
    });
    after(async () => {
      g1?.kill();
      g2?.kill();
      nm?.close();
      await w?.destroy();
    });

    it('sets up the host network, idempotently', async () => {
      await nm.startHost();
      const first = await w.hostDump();
      await nm.startHost();
      assert.equal(await w.hostDump(), first, 'a second startHost (daemon restart) changes nothing');
      if (c.mode === 'bridge') {
        assert.match(first, /xenbr0\s+UP\s+192\.168\.100\.1\/24/, 'the host address moved to the bridge');
        assert.match(first, /default via 192\.168\.100\.2 dev xenbr0/, 'and the default route');
        const eth0 = await w.run(w.host, ['ip', '-d', 'link', 'show', 'eth0']);
        assert.match(eth0.stdout, /master xenbr0/);
      } else {
        assert.equal((await w.run(w.host, ['cat', '/proc/sys/net/ipv4/ip_forward'])).stdout.trim(), '1');
      }
      assert.match(first, new RegExp(`table inet xeno_${instance}`));
    });

    it('plugs vifs and boots guests that configure themselves from the command line', async () => {
      const p1 = await nm.plug(1, 'g1', c.g1, { ethIndex: 0 });
      const p2 = await nm.plug(2, 'g2', c.g2, { ethIndex: 0 });
      assert.equal(p1.nic.ifname, 'vif1.0');
      assert.equal(p2.nic.ifname, 'vif2.0');
      assert.match(p1.nic.mac, /^00:16:3e:[0-7][0-9a-f](:[0-9a-f]{2}){2}$/);
      assert.notEqual(p1.nic.mac, p2.nic.mac);
      if (c.mode === 'nat') {
        assert.equal(p1.guestArg, 'xeno.net=eth0:dhcp');
        assert.equal(p2.guestArg, 'xeno.net=eth0:10.0.0.10/30:10.0.0.9');
      } else if (c.mode === 'route') {
        assert.equal(p1.guestArg, `xeno.net=eth0:192.168.100.50/24:${HOST_IP}`);
      } else {
        assert.equal(p1.guestArg, `xeno.net=eth0:192.168.100.10/24:${OUTSIDE_IP}`);
      }
      [g1, g2] = await Promise.all([
        DirectGuest.start({ netns: w.host, name: 'g1', domid: 1, dir: w.dir, nics: [p1.nic], extra: p1.guestArg!, track: (p) => w.track(p) }),
        DirectGuest.start({ netns: w.host, name: 'g2', domid: 2, dir: w.dir, nics: [p2.nic], extra: p2.guestArg!, track: (p) => w.track(p) }),
      ]);
      if (!g1Ip) g1Ip = (await g1.waitFor(/xeno-guest: net eth0 ([\d.]+)\//, 20_000))[1]!;
      if (c.mode === 'nat') assert.match(g1Ip, /^10\.0\.0\.\d+$/, 'the DHCP lease comes from the instance dnsmasq');
    });

    it('re-plugging a live vif (re-adoption) duplicates nothing', async () => {
      const before = await w.hostDump();
      await nm.plug(1, 'g1', c.g1, { ethIndex: 0 });
      await nm.plug(2, 'g2', c.g2, { ethIndex: 0 });
      await nm.startHost();
      assert.equal(await w.hostDump(), before);
    });

    it('the guest reaches the outside (ping and TCP)', async () => {
      await g1.ok(`ping -c 2 -W 3 ${OUTSIDE_IP}`);
      const srv = await w.tcpServer(w.outside, 5001);
      const out = await g1.ok(`echo hello | nc -w 5 ${OUTSIDE_IP} 5001`);
      const r = await srv.result(1, 10_000);
      assert.equal(r.bytes, 6);
      if (c.mode === 'nat') {
        assert.equal(r.from, HOST_IP, 'NAT: the outside sees the host address');
        assert.match(out, new RegExp(`from ${HOST_IP.replace(/\./g, '\\.')}`));
      } else {
        assert.equal(r.from, g1Ip, `${c.mode}: the outside sees the guest itself`);
      }
    });

    it(c.mode === 'nat' ? 'the outside cannot open connections to a NAT guest' : 'the outside reaches the guest', async () => {
      await g1.ok('echo guest-hello | nc -l -p 7000 & sleep 0');
      await new Promise((r) => setTimeout(r, 300));
      if (c.mode === 'nat') {
        // Give the outside a route to the pool: only the firewall stands in the way.
        await w.run(w.outside, ['ip', 'route', 'replace', '10.0.0.0/16', 'via', HOST_IP]);
        assert.equal(await w.ping(w.outside, g1Ip, 1), false);
        assert.equal(await w.tcpFetch(w.outside, g1Ip, 7000, 2000), null);
        await g1.run('kill $! 2>/dev/null; true');
      } else {
        assert.equal(await w.ping(w.outside, g1Ip), true);
        assert.match((await w.tcpFetch(w.outside, g1Ip, 7000, 3000)) ?? '', /guest-hello/);
      }
    });

    it('two guests on the host reach each other', async () => {
      await g1.ok(`ping -c 2 -W 3 ${c.g2Ip}`);
      await g2.ok(`ping -c 2 -W 3 ${g1Ip}`);
    });

    it("a rule added to the vif's chain blocks what it names", async () => {
      const family = c.mode === 'bridge' ? 'bridge' : 'inet';
      await w.run(w.host, ['nft', 'add', 'rule', family, `xeno_${instance}`, 'vif1.0', 'tcp', 'dport', '5002', 'drop']);
      const rules = await nm.rules(1);
      assert.equal(rules.length, 1);
      assert.equal(rules[0]!.chain, 'vif1.0');
      assert.deepEqual(rules[0]!.rules, ['tcp dport 5002 drop']);
      const s2 = await w.tcpServer(w.outside, 5002);
      const blocked = await g1.run(`echo x | nc -w 2 ${OUTSIDE_IP} 5002`);
      assert.notEqual(blocked.code, 0);
      assert.equal(s2.count, 0);
      await nm.plug(1, 'g1', c.g1, { ethIndex: 0 });
      assert.deepEqual((await nm.rules(1))[0]!.rules, ['tcp dport 5002 drop'], 're-plugging keeps the admin rules');
      const s1 = await w.tcpServer(w.outside, 5011);
      await g1.ok(`echo y | nc -w 5 ${OUTSIDE_IP} 5011`);
      assert.equal((await s1.result(1, 5000)).bytes, 2, 'other traffic still passes');
    });

    if (c.mode !== 'bridge') {
      it('a guest that spoofs another address is dropped', async () => {
        const fake = c.mode === 'nat' ? '10.0.0.99' : '192.168.100.99';
        await w.installIcmpCounter(w.outside);
        await g1.ok(`ip addr add ${fake}/32 dev eth0`);
        const before = await w.icmpCount(w.outside);
        const r = await g1.run(`ping -c 2 -W 1 -I ${fake} ${OUTSIDE_IP}`);
        assert.notEqual(r.code, 0);
        assert.equal(await w.icmpCount(w.outside), before, 'nothing from the spoofed address reached the outside');
        await g1.ok(`ip addr del ${fake}/32 dev eth0`);
        await g1.ok(`ping -c 1 -W 3 ${OUTSIDE_IP}`);
        assert.ok((await w.icmpCount(w.outside)) > before, 'the real address still gets through');
      });
    }

    it('rate= caps what the guest sends', async (t) => {
      const send = async (g: DirectGuest, port: number) => {
        const srv = await w.tcpServer(w.outside, port, RATE_BYTES);
        await g.run(`dd if=/dev/zero bs=65536 count=${RATE_BYTES / 65536} 2>/dev/null | nc -w 5 ${OUTSIDE_IP} ${port}`, 60_000);
        const r = await srv.result(1, 30_000);
        assert.equal(r.bytes, RATE_BYTES);
        return r.bytes / (r.ms / 1000);
      };
      const free = await send(g1, 5003);
      const capped = await send(g2, 5004);
      const limit = RATE_LIMIT;
      t.diagnostic(`${c.mode}: uncapped ${(free / 1e6).toFixed(2)} MB/s, rate=${RATE} ${(capped / 1e6).toFixed(2)} MB/s`);
      assert.ok(capped <= limit * 1.15, `capped guest sent ${(capped / 1e6).toFixed(2)} MB/s, limit ${limit / 1e6} MB/s`);
      assert.ok(capped >= limit * 0.5, `capped guest sent ${(capped / 1e6).toFixed(2)} MB/s: the cap is not that low`);
      assert.ok(free > capped * 1.5, `uncapped guest ${(free / 1e6).toFixed(2)} MB/s vs capped ${(capped / 1e6).toFixed(2)} MB/s`);
    });

    it('after the guests are gone, unplug leaves nothing; stopHost restores the host', async () => {
      g1.kill();
      g2.kill();
      await new Promise((r) => setTimeout(r, 300));
      await nm.unplug(1);
      await nm.unplug(2);
      await nm.unplug(2); // twice: missing things are not errors
      const dump = await w.hostDump();
      assert.doesNotMatch(dump, /vif\d|ifb\d/, 'no vif, ifb, chain or map entry left');
      assert.doesNotMatch(dump, /192\.168\.100\.5\d|10\.0\.0\.(9|10)\b/, 'no route or proxy entry left');
      assert.deepEqual(nm.list(1), []);
      assert.equal(nm.dnsmasq.pid(), undefined, 'no dnsmasq once no NAT vif is left');
      await nm.stopHost();
      const after = await w.hostDump();
      assert.match(after, /eth0@\w+\s+UP\s+192\.168\.100\.1\/24/);
      assert.match(after, /default via 192\.168\.100\.2 dev eth0/);
      assert.doesNotMatch(after, /xenbr0|xeno_/);
      if (c.mode !== 'bridge') assert.equal((await w.run(w.host, ['cat', '/proc/sys/net/ipv4/ip_forward'])).stdout.trim(), '0');
    });
  });
}
