/**
 * Networking end to end: xenod itself runs inside a "host" namespace whose physical NIC is a veth
 * to an "outside" namespace; guests are created with the real CLI. Per mode (bridge, NAT, route):
 * the guest reaches the outside (ping, TCP with busybox nc), the outside reaches the guest where
 * the mode allows it and not behind NAT, two guests reach each other, the outside sees the host's
 * address in NAT mode, a rule in a vif's chain blocks what it names, spoofing is dropped (NAT,
 * route), rate= caps throughput, and after destroy nothing is left. Plus hot-plug (network-attach /
 * network-detach), re-adoption by a restarted daemon, and `xenod --network-stop`.
 * Only addresses inside the test's namespaces are used.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import path from 'node:path';
import type { VifListEntry } from '../src/model/api.js';
import { REPO, TestDaemon, skipIf, sleep } from './helpers/harness.js';
import { HOST_IP, NetWorld, OUTSIDE_IP, sh } from './net/world.js';

// Low enough that even a TCG guest on a loaded machine sends well above it when uncapped.
const RATE = '2Mb/s';
const RATE_LIMIT = 250_000; // bytes/s: 2 Mbit/s
const RATE_BYTES = 512 * 1024;

type VifRow = VifListEntry;

interface ModeCase {
  mode: 'bridge' | 'nat' | 'route';
  g1Vif: string;
  g2Vif: string;
  g2Ip: string;
}

const CASES: ModeCase[] = [
  { mode: 'bridge', g1Vif: 'ip=192.168.100.10', g2Vif: `ip=192.168.100.11, rate=${RATE}`, g2Ip: '192.168.100.11' },
  { mode: 'nat', g1Vif: '', g2Vif: `ip=10.0.0.10, rate=${RATE}`, g2Ip: '10.0.0.10' },
  { mode: 'route', g1Vif: 'ip=192.168.100.50', g2Vif: `ip=192.168.100.51, rate=${RATE}`, g2Ip: '192.168.100.51' },
];

/** XENO_NET_MODES=nat,route runs only those modes (a development filter: the others fail under CI). */
const only = process.env.XENO_NET_MODES?.split(',');

for (const c of CASES.filter((k) => only && !only.includes(k.mode))) {
  describe(`network-${c.mode} through xenod and the CLI`, { skip: skipIf(true, `XENO_NET_MODES=${only!.join(',')} leaves out ${c.mode}`) }, () => {
    it('runs', () => undefined);
  });
}

for (const c of CASES.filter((k) => !only || only.includes(k.mode))) {
  describe(`network-${c.mode} through xenod and the CLI`, { timeout: 400_000 }, () => {
    let w: NetWorld;
    let d: TestDaemon;
    let g1Ip = '';
    let g1Vif = '';
    let table = '';

    /** Runs a guest command on its console and returns [output, exit status]. */
    const inGuest = async (name: string, cmd: string, timeoutMs = 30_000): Promise<[string, number]> => {
      const out = await d.guestRun(name, `${cmd}; echo rc=$?`, timeoutMs);
      const m = /rc=(\d+)\s*$/.exec(out.trim());
      return [out, m ? Number(m[1]) : -1];
    };
    const guestOk = async (name: string, cmd: string, timeoutMs?: number): Promise<string> => {
      const [out, rc] = await inGuest(name, cmd, timeoutMs);
      assert.equal(rc, 0, `${name}: ${cmd}\n${out}`);
      return out;
    };

    before(async () => {
      w = await NetWorld.create(`e${c.mode.slice(0, 1)}`);
      d = new TestDaemon({
        wrap: ['ip', 'netns', 'exec', w.host],
        args: ['--accel', 'tcg'],
        configText: `(network-script 'network-${c.mode} netdev=eth0')\n(vif-script vif-${c.mode})\n`,
      });
      await d.start();
    });
    after(async () => {
      await d?.cleanup();
      await w?.destroy();
    });

    it('creates guests whose vifs are set up and configured from the command line', async () => {
      const [id1] = await Promise.all([
        d.createGuest('g1', { vif: `['${c.g1Vif}']` }),
        d.createGuest('g2', { vif: `['${c.g2Vif}']` }),
      ]);
      g1Vif = `vif${id1}.0`;
      const list = JSON.parse(await d.ok(['network-list', '--json', 'g1'])) as { vifs: VifRow[] };
      assert.equal(list.vifs.length, 1);
      assert.equal(list.vifs[0]!.ifname, g1Vif);
      assert.equal(list.vifs[0]!.mode, c.mode);
      assert.match(list.vifs[0]!.mac, /^00:16:3e:/);
      g1Ip = list.vifs[0]!.ips[0] ?? '';
      const table1 = await d.ok(['network-list', 'g1', 'g2']);
      assert.match(table1, /^Idx\s+BE\s+Mac Addr\.\s+handle\s+state/);
      assert.match(table1, new RegExp(`^0\\s+0\\s+00:16:3e:\\S+\\s+0\\s+4\\s+${g1Vif.replace('.', '\\.')}\\s+${c.mode}`, 'm'));
      assert.match(table1, new RegExp(`${RATE.replace('/', '\\/')}$`, 'm'), 'the rate shows');
      await Promise.all([d.waitConsole('g1', /xeno-guest: net eth0 [\d.]+\//, 30_000), d.waitConsole('g2', /xeno-guest: net eth0/, 30_000)]);
      if (c.mode === 'nat') assert.match(d.consoleLog('g1'), new RegExp(`net eth0 ${g1Ip.replace(/\./g, '\\.')}/30`), 'leased by the dnsmasq of xenod');
      const rules = await d.ok(['network-rules', 'g1']);
      table = /table (?:inet|bridge) (xeno_\w+)/.exec(rules)![1]!;
      assert.match(rules, /\(no rules\)/);
    });

    it('the guest reaches the outside: ping and a TCP connection', async () => {
      await guestOk('g1', `ping -c 2 -W 3 ${OUTSIDE_IP}`);
      const srv = await w.tcpServer(w.outside, 5001);
      const out = await guestOk('g1', `echo hello | nc -w 5 ${OUTSIDE_IP} 5001`);
      const r = await srv.result(1, 10_000);
      assert.equal(r.bytes, 6);
      if (c.mode === 'nat') {
        assert.equal(r.from, HOST_IP, 'NAT: the outside sees the host address as the source');
        assert.match(out, /from 192\.168\.100\.1\b/);
      } else {
        assert.equal(r.from, g1Ip);
      }
    });

    it(c.mode === 'nat' ? 'the outside cannot reach a NAT guest, even with a route to it' : 'the outside reaches the guest', async () => {
      await guestOk('g1', 'echo guest-hello | nc -l -p 7000 & sleep 0');
      await sleep(300);
      if (c.mode === 'nat') {
        await w.run(w.outside, ['ip', 'route', 'replace', '10.0.0.0/16', 'via', HOST_IP]);
        assert.equal(await w.ping(w.outside, g1Ip, 1), false);
        assert.equal(await w.tcpFetch(w.outside, g1Ip, 7000, 2000), null);
        // the listener was up all along: the host, its gateway, still gets the greeting
        assert.match((await w.tcpFetch(w.host, g1Ip, 7000, 5000)) ?? '', /guest-hello/, 'the guest listened on 7000');
      } else {
        assert.equal(await w.ping(w.outside, g1Ip), true);
        assert.match((await w.tcpFetch(w.outside, g1Ip, 7000, 3000)) ?? '', /guest-hello/);
      }
    });

    it('two guests on one host reach each other', async () => {
      await guestOk('g1', `ping -c 2 -W 3 ${c.g2Ip}`);
      await guestOk('g2', `ping -c 2 -W 3 ${g1Ip}`);
    });

    it("a rule added to a vif's chain blocks what it names; network-rules lists it", async () => {
      const family = c.mode === 'bridge' ? 'bridge' : 'inet';
      const add = await w.run(w.host, ['nft', 'add', 'rule', family, table, g1Vif, 'tcp', 'dport', '5002', 'drop']);
      assert.equal(add.code, 0, add.stderr);
      assert.match(await d.ok(['network-rules', 'g1']), /^\s+tcp dport 5002 drop$/m);
      const blocked = await w.tcpServer(w.outside, 5002);
      const [, rc] = await inGuest('g1', `echo x | nc -w 2 ${OUTSIDE_IP} 5002`);
      assert.notEqual(rc, 0);
      assert.equal(blocked.count, 0, 'nothing reached the outside');
      const open = await w.tcpServer(w.outside, 5012);
      await guestOk('g1', `echo y | nc -w 5 ${OUTSIDE_IP} 5012`);
      assert.equal((await open.result(1, 5000)).bytes, 2, 'what the rule does not name still passes');
    });

    if (c.mode !== 'bridge') {
      it("a guest sending from an address that is not its own is dropped by xeno's own rule", async () => {
        const fake = c.mode === 'nat' ? '10.0.0.99' : '192.168.100.99';
        const g2Vif = (JSON.parse(await d.ok(['network-list', '--json', 'g2'])) as { vifs: VifRow[] }).vifs[0]!.ifname;
        // the kernel's reverse-path filter would drop spoofed packets too: pin it off, so that only
        // xeno's anti-spoofing rule can stand between the guest and the outside
        for (const k of ['all', 'default', g2Vif]) await w.run(w.host, ['sysctl', '-qw', `net.ipv4.conf.${k}.rp_filter=0`]);
        const spoofDrops = async () => {
          const chain = await w.run(w.host, ['nft', 'list', 'chain', 'inet', table, `from_${g2Vif}`]);
          assert.equal(chain.code, 0, chain.stderr);
          const m = /ip saddr != \S+(?: \S+)*? counter packets (\d+) bytes \d+ drop/.exec(chain.stdout);
          assert.ok(m, `xeno's anti-spoofing rule in ${chain.stdout}`);
          return Number(m[1]);
        };
        await w.installIcmpCounter(w.outside);
        // a fresh neighbour entry for the gateway: the spoofed pings then need no ARP (which xeno's
        // ARP filter would drop first), so they meet the IP rule
        await guestOk('g2', `ping -c 1 -W 3 ${OUTSIDE_IP}`);
        await guestOk('g2', `ip addr add ${fake}/32 dev eth0`);
        const n0 = await w.icmpCount(w.outside);
        const drops0 = await spoofDrops();
        const [, rc] = await inGuest('g2', `ping -c 2 -W 1 -I ${fake} ${OUTSIDE_IP}`);
        assert.notEqual(rc, 0);
        assert.equal(await w.icmpCount(w.outside), n0, 'no packet from the spoofed address reached the outside');
        assert.ok((await spoofDrops()) >= drops0 + 2, 'the spoofed pings were counted by xeno\'s saddr rule');
        await guestOk('g2', `ip addr del ${fake}/32 dev eth0`);
        // Any reply will do: the ARP entry the spoofed pings left incomplete may drop the first packet.
        await guestOk('g2', `ping -c 3 -W 2 ${OUTSIDE_IP}`);
        assert.ok((await w.icmpCount(w.outside)) > n0);
      });

      it('a guest sending from a MAC that is not its own is dropped', async () => {
        await w.installIcmpCounter(w.outside).catch(() => undefined);
        const n0 = await w.icmpCount(w.outside);
        const mac = (JSON.parse(await d.ok(['network-list', '--json', 'g2'])) as { vifs: VifRow[] }).vifs[0]!.mac;
        assert.match(await guestOk('g2', 'cat /sys/class/net/eth0/address'), new RegExp(`^${mac}$`, 'm'));
        await guestOk('g2', 'ip link set eth0 address 00:16:3e:aa:bb:cc');
        const [, rc] = await inGuest('g2', `ping -c 2 -W 1 ${OUTSIDE_IP}`);
        assert.notEqual(rc, 0, 'a forged MAC gets nothing through');
        assert.equal(await w.icmpCount(w.outside), n0, 'no packet from the forged MAC reached the outside');
        await guestOk('g2', `ip link set eth0 address ${mac}`);
        await guestOk('g2', `ping -c 3 -W 2 ${OUTSIDE_IP}`);
        assert.ok((await w.icmpCount(w.outside)) > n0, 'with its own MAC back, it passes');
      });
    }

    // The achieved throughput is a benchmark figure (bench/net.ts); here the shaper's own counters:
    // the guest's transmit goes through a tbf at the rate, which holds packets back (overlimits).
    it('rate= shapes what the guest sends through a tbf at that rate', async () => {
      const g2Vif = (JSON.parse(await d.ok(['network-list', '--json', 'g2'])) as { vifs: VifRow[] }).vifs[0]!.ifname;
      const links = JSON.parse((await w.run(w.host, ['ip', '-j', '-d', 'link', 'show', 'type', 'ifb'])).stdout || '[]') as Array<{ ifname: string; ifalias?: string }>;
      const stats = async () => {
        const all = JSON.parse((await w.run(w.host, ['tc', '-s', '-j', 'qdisc', 'show'])).stdout) as Array<{ dev: string; kind: string; options?: { rate?: number }; bytes?: number; overlimits?: number }>;
        return all.filter((q) => q.kind === 'tbf');
      };
      const before = await stats();
      assert.equal(before.length, 1, `one shaped vif (g2's), not g1's: ${JSON.stringify(before)}`);
      const tbf = before[0]!;
      assert.ok(links.some((l) => l.ifname === tbf.dev), `the tbf sits on an ifb device: ${tbf.dev}`);
      assert.equal(tbf.options?.rate, RATE_LIMIT, `tbf rate ${tbf.options?.rate} B/s for rate=${RATE} on ${g2Vif}`);
      const srv = await w.tcpServer(w.outside, 5004, RATE_BYTES);
      await inGuest('g2', `dd if=/dev/zero bs=65536 count=${RATE_BYTES / 65536} 2>/dev/null | nc -w 5 ${OUTSIDE_IP} 5004`, 90_000);
      assert.equal((await srv.result(1, 60_000)).bytes, RATE_BYTES, 'everything arrives, only later');
      const after = (await stats())[0]!;
      assert.ok((after.bytes ?? 0) - (tbf.bytes ?? 0) >= RATE_BYTES, 'the transfer went through the shaper');
      assert.ok((after.overlimits ?? 0) > (tbf.overlimits ?? 0), 'the shaper held packets back');
    });

    it('network-attach hot-plugs a vif with its backend; network-detach removes both', async () => {
      const spec = { bridge: 'ip=192.168.100.12', nat: 'ip=10.0.0.22', route: 'ip=192.168.100.52' }[c.mode];
      const out = await d.ok(['network-attach', 'g1', spec]);
      const m = new RegExp(`^vif 1: (vif\\d+\\.1) (00:16:3e:\\S+) \\(${c.mode}\\)(?:; configure it in the guest as (\\S+) via (\\S+))?$`, 'm').exec(out);
      assert.ok(m, out);
      const [, vif1, mac1, addr, gw] = m;
      if (c.mode === 'nat') assert.equal(`${addr} via ${gw}`, '10.0.0.22/30 via 10.0.0.21');
      const list = JSON.parse(await d.ok(['network-list', '--json', 'g1'])) as { vifs: VifRow[] };
      assert.equal(list.vifs.length, 2);
      assert.equal(list.vifs[1]!.ifname, vif1);
      assert.equal(list.vifs[1]!.mode, c.mode);
      const dump = await w.hostDump();
      const v = vif1!.replace('.', '\\.');
      if (c.mode === 'nat') assert.match(dump, new RegExp(`${v}\\s+UP\\s+10\\.0\\.0\\.21/30`));
      if (c.mode === 'bridge') assert.match((await w.run(w.host, ['ip', '-d', 'link', 'show', vif1!])).stdout, /master xenbr0/, 'the new tap is a port of the bridge');
      if (c.mode === 'route') assert.match(dump, new RegExp(`^192\\.168\\.100\\.52 dev ${v}`, 'm'), 'the /32 is routed through the new vif');
      // the guest sees the new NIC, with the MAC xenod gave it
      await guestOk('g1', 'i=0; while [ ! -e /sys/class/net/eth1 ] && [ $i -lt 50 ]; do sleep 0.2; i=$((i+1)); done; ip link set eth1 up');
      assert.match(await guestOk('g1', 'cat /sys/class/net/eth1/address'), new RegExp(`^${mac1}$`, 'm'));
      if (addr && gw) {
        // traffic through the new vif itself: bound to eth1, from its own address
        // (bridge: eth0 and eth1 share a subnet; arp_ignore=1 keeps eth0 from answering for eth1's address)
        await guestOk('g1', `echo 1 > /proc/sys/net/ipv4/conf/all/arp_ignore; ip addr add ${addr} dev eth1`);
        await guestOk('g1', `ping -c 2 -W 3 -I eth1 ${gw}`);
        await guestOk('g1', 'echo 0 > /proc/sys/net/ipv4/conf/all/arp_ignore');
      }
      await d.ok(['network-detach', 'g1', '1']);
      assert.equal((JSON.parse(await d.ok(['network-list', '--json', 'g1'])) as { vifs: VifRow[] }).vifs.length, 1);
      assert.doesNotMatch(await w.hostDump(), new RegExp(`${v}\\b`), 'the backend is gone');
      await guestOk('g1', 'i=0; while [ -e /sys/class/net/eth1 ] && [ $i -lt 50 ]; do sleep 0.2; i=$((i+1)); done; [ ! -e /sys/class/net/eth1 ]');
      const long = JSON.parse(await d.ok(['list', '-l', 'g1'])) as Array<{ config: { vifs: unknown[] } }>;
      assert.equal(long[0]!.config.vifs.length, 1, 'the stored config follows');
      const bad = await d.xeno(['network-detach', 'g1', '7']);
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /no vif 7/);
      await guestOk('g1', `ping -c 1 -W 3 ${OUTSIDE_IP}`);
    });

    if (c.mode === 'nat') {
      it('save removes the backend; restore re-creates it with the same subnet', async () => {
        const file = path.join(d.dir, 'g1.save');
        const before = (JSON.parse(await d.ok(['network-list', '--json', 'g1'])) as { vifs: VifRow[] }).vifs[0]!;
        await d.ok(['save', 'g1', file]);
        assert.doesNotMatch(await w.hostDump(), new RegExp(`${g1Vif.replace('.', '\\.')}\\b`), 'a saved guest holds no vif');
        await d.ok(['restore', file]);
        const after = (JSON.parse(await d.ok(['network-list', '--json', 'g1'])) as { vifs: VifRow[] }).vifs[0]!;
        assert.notEqual(after.ifname, before.ifname, 'a new domain id, a new vif name');
        assert.equal(after.mac, before.mac);
        assert.deepEqual(after.ips, before.ips, 'the same /30: the guest keeps its lease');
        g1Vif = after.ifname;
        await guestOk('g1', `ping -c 3 -W 2 ${OUTSIDE_IP}`);
      });
    }

    it('a restarted xenod re-adopts the network without duplicating anything', async () => {
      await w.run(w.host, ['nft', 'add', 'rule', c.mode === 'bridge' ? 'bridge' : 'inet', table, g1Vif, 'udp', 'dport', '9', 'drop']);
      // the anti-spoofing counters restart with a re-applied rule: compare the rules, not their counts
      const dump = async () => (await w.hostDump()).replace(/counter packets \d+ bytes \d+/g, 'counter');
      const before = await dump();
      const pids = async () => (await w.processList(w.host)).filter((p) => /dnsmasq|qemu/.test(p.cmdline)).map((p) => p.pid).sort();
      const procs = await pids();
      if (c.mode === 'nat') assert.ok((await w.processList(w.host)).some((p) => /dnsmasq/.test(p.cmdline)), 'a dnsmasq serves the NAT vifs');
      await d.stop('SIGKILL');
      await d.start();
      await sleep(500);
      assert.equal(await dump(), before);
      assert.deepEqual(await pids(), procs, 'the same QEMU and dnsmasq processes (pids), none restarted');
      await guestOk('g1', `ping -c 1 -W 3 ${OUTSIDE_IP}`);
    });

    it('after destroy no vif, route, rule or process is left', async () => {
      await d.ok(['destroy', 'g1']);
      await d.ok(['destroy', 'g2']);
      const dump = await w.hostDump();
      assert.doesNotMatch(dump, /vif\d|ifb\d/, 'no tap, ifb, chain or map element');
      assert.doesNotMatch(dump, /192\.168\.100\.(1[01]|5\d)\b|10\.0\.0\.\d+\/30/, 'no route, proxy entry or vif address');
      const procs = await w.processes(w.host);
      assert.deepEqual(procs.filter((p) => /qemu-system|dnsmasq/.test(p)), [], 'no QEMU, no dnsmasq');
      if (c.mode === 'bridge') {
        assert.match(dump, /xenbr0\s+UP\s+192\.168\.100\.1\/24/, 'the bridge holding the host address stays');
      } else {
        assert.doesNotMatch(dump, /table \w+ xeno_/, 'with no vif left, the NAT/route setup is gone too');
        assert.equal((await w.run(w.host, ['cat', '/proc/sys/net/ipv4/ip_forward'])).stdout.trim(), '0');
      }
    });

    if (c.mode === 'bridge') {
      it('xenod --network-stop puts the address back on the physical interface', async () => {
        await d.stop('SIGTERM');
        assert.match(await w.hostDump(), /xenbr0\s+UP\s+192\.168\.100\.1\/24/, 'a daemon stop leaves the host network');
        const r = await sh(w.in(w.host, [process.execPath, path.join(REPO, 'bin/xenod.js'), '--state-dir', d.stateDir, '--network-stop']), { timeoutMs: 30_000 });
        assert.equal(r.code, 0, r.stderr);
        const dump = await w.hostDump();
        assert.match(dump, /eth0@\w+\s+UP\s+192\.168\.100\.1\/24/);
        assert.match(dump, /default via 192\.168\.100\.2 dev eth0/);
        assert.doesNotMatch(dump, /xenbr0|xeno_/);
        assert.equal(await w.ping(w.host, OUTSIDE_IP, 1), true);
      });
    }
  });
}
