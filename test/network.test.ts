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
import { REPO, TestDaemon, sleep } from './helpers/harness.js';
import { HOST_IP, NetWorld, OUTSIDE_IP, sh } from './net/world.js';

// Low enough that even a TCG guest on a loaded machine sends well above it when uncapped.
const RATE = '2Mb/s';
const RATE_LIMIT = 250_000; // bytes/s
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

/** XENO_NET_MODES=nat,route runs only those modes. */
const only = process.env.XENO_NET_MODES?.split(',');

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
        await inGuest('g1', 'kill $!');
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
      it('a guest sending from an address that is not its own is dropped', async () => {
        const fake = c.mode === 'nat' ? '10.0.0.99' : '192.168.100.99';
        await w.installIcmpCounter(w.outside);
        await guestOk('g2', `ip addr add ${fake}/32 dev eth0`);
        const n0 = await w.icmpCount(w.outside);
        const [, rc] = await inGuest('g2', `ping -c 2 -W 1 -I ${fake} ${OUTSIDE_IP}`);
        assert.notEqual(rc, 0);
        assert.equal(await w.icmpCount(w.outside), n0, 'no packet from the spoofed address reached the outside');
        await guestOk('g2', `ip addr del ${fake}/32 dev eth0`);
        // Any reply will do: the ARP entry the spoofed pings left incomplete may drop the first packet.
        await guestOk('g2', `ping -c 3 -W 2 ${OUTSIDE_IP}`);
        assert.ok((await w.icmpCount(w.outside)) > n0);
      });
    }

    it('rate= caps what the guest sends', async (t) => {
      const send = async (name: string, port: number) => {
        const srv = await w.tcpServer(w.outside, port, RATE_BYTES);
        await inGuest(name, `dd if=/dev/zero bs=65536 count=${RATE_BYTES / 65536} 2>/dev/null | nc -w 5 ${OUTSIDE_IP} ${port}`, 60_000);
        const r = await srv.result(1, 30_000);
        assert.equal(r.bytes, RATE_BYTES);
        return r.bytes / (r.ms / 1000);
      };
      const free = await send('g1', 5003);
      const capped = await send('g2', 5004);
      t.diagnostic(`${c.mode}: uncapped ${(free / 1e6).toFixed(2)} MB/s, rate=${RATE} ${(capped / 1e6).toFixed(2)} MB/s`);
      assert.ok(capped <= RATE_LIMIT * 1.15, `rate=${RATE}: the guest sent ${(capped / 1e6).toFixed(2)} MB/s`);
      assert.ok(capped >= RATE_LIMIT * 0.5, `rate=${RATE}: only ${(capped / 1e6).toFixed(2)} MB/s`);
      assert.ok(free > capped * 1.5, `uncapped ${(free / 1e6).toFixed(2)} MB/s vs capped ${(capped / 1e6).toFixed(2)} MB/s`);
    });

    if (c.mode === 'nat') {
      it('network-attach hot-plugs a vif with its backend; network-detach removes both', async () => {
        const out = await d.ok(['network-attach', 'g1', 'ip=10.0.0.22']);
        assert.match(out, /^vif 1: vif\d+\.1 00:16:3e:\S+ \(nat\); configure it in the guest as 10\.0\.0\.22\/30 via 10\.0\.0\.21$/m);
        const list = JSON.parse(await d.ok(['network-list', '--json', 'g1'])) as { vifs: VifRow[] };
        assert.equal(list.vifs.length, 2);
        const vif1 = list.vifs[1]!.ifname;
        assert.match(await w.hostDump(), new RegExp(`${vif1.replace('.', '\\.')}\\s+UP\\s+10\\.0\\.0\\.21/30`));
        await guestOk('g1', 'i=0; while [ ! -e /sys/class/net/eth1 ] && [ $i -lt 50 ]; do sleep 0.2; i=$((i+1)); done; ip link set eth1 up && ip addr add 10.0.0.22/30 dev eth1');
        await guestOk('g1', 'ping -c 2 -W 3 10.0.0.21');
        await d.ok(['network-detach', 'g1', '1']);
        assert.equal((JSON.parse(await d.ok(['network-list', '--json', 'g1'])) as { vifs: VifRow[] }).vifs.length, 1);
        assert.doesNotMatch(await w.hostDump(), new RegExp(vif1.replace('.', '\\.')), 'the backend is gone');
        await guestOk('g1', 'i=0; while [ -e /sys/class/net/eth1 ] && [ $i -lt 50 ]; do sleep 0.2; i=$((i+1)); done; [ ! -e /sys/class/net/eth1 ]');
        const long = JSON.parse(await d.ok(['list', '-l', 'g1'])) as Array<{ config: { vifs: unknown[] } }>;
        assert.equal(long[0]!.config.vifs.length, 1, 'the stored config follows');
        const bad = await d.xeno(['network-detach', 'g1', '7']);
        assert.notEqual(bad.code, 0);
        assert.match(bad.stderr, /no vif 7/);
      });
    }

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

    if (c.mode !== 'route') {
      it('a restarted xenod re-adopts the network without duplicating anything', async () => {
        await w.run(w.host, ['nft', 'add', 'rule', c.mode === 'bridge' ? 'bridge' : 'inet', table, g1Vif, 'udp', 'dport', '9', 'drop']);
        const before = await w.hostDump();
        const procs = (await w.processes(w.host)).filter((p) => /dnsmasq|qemu/.test(p)).sort();
        await d.stop('SIGKILL');
        await d.start();
        await sleep(500);
        assert.equal(await w.hostDump(), before);
        assert.deepEqual((await w.processes(w.host)).filter((p) => /dnsmasq|qemu/.test(p)).sort(), procs, 'same QEMUs, same dnsmasq');
        await guestOk('g1', `ping -c 1 -W 3 ${OUTSIDE_IP}`);
      });
    }

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
