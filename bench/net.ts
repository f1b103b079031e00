/**
 * `npm run bench -- net [--rounds N] [--mb M]`: guest-to-outside TCP throughput and ping latency,
 * per mode (bridge, NAT, route), of a guest whose vif xeno set up (NetworkManager: tap, bridge
 * port or routes, nftables chains and anti-spoofing, masquerade) versus the same guest on a plain
 * tap set up by hand with the least the mode needs (raw QEMU, no xeno), in the same run, rounds
 * alternating. Everything lives in private network namespaces. Target: >= 0.95x the plain tap's
 * throughput and at most 0.1 ms added per ping.
 */
import { NetworkManager } from '../src/host/network/network-manager.js';
import { defaultDaemonConfig } from '../src/model/daemon-config.js';
import { DirectGuest } from '../test/net/guest.js';
import { HOST_IP, NetWorld, OUTSIDE_IP, must } from '../test/net/world.js';
import { arg, hostAccel, median, plusRow, report, results } from './lib.js';

type Mode = 'bridge' | 'nat' | 'route';

const GUEST_IP: Record<Mode, string> = { bridge: '192.168.100.10', nat: '10.0.0.6', route: '192.168.100.50' };
const GUEST_NET: Record<Mode, string> = {
  bridge: `192.168.100.10/24:${OUTSIDE_IP}`,
  nat: '10.0.0.6/30:10.0.0.5',
  route: `192.168.100.50/24:${HOST_IP}`,
};

/** The same topology built by hand: what a plain tap needs in each mode, and nothing else. */
async function rawSetup(w: NetWorld, mode: Mode): Promise<void> {
  const ip = (...a: string[]) => must(w.in(w.host, ['ip', ...a]));
  const sysctl = (kv: string) => must(w.in(w.host, ['sysctl', '-qw', kv]));
  await ip('tuntap', 'add', 'dev', 'tap0', 'mode', 'tap', 'vnet_hdr');
  await ip('link', 'set', 'tap0', 'up');
  if (mode === 'bridge') {
    await ip('link', 'add', 'br0', 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0');
    await ip('addr', 'del', `${HOST_IP}/24`, 'dev', 'eth0');
    await ip('link', 'set', 'eth0', 'master', 'br0');
    await ip('link', 'set', 'tap0', 'master', 'br0');
    await ip('link', 'set', 'br0', 'up');
    await ip('addr', 'add', `${HOST_IP}/24`, 'dev', 'br0');
  } else if (mode === 'nat') {
    await sysctl('net.ipv4.ip_forward=1');
    await ip('addr', 'add', '10.0.0.5/30', 'dev', 'tap0');
    await must(w.in(w.host, ['nft', '-f', '-']), {
      input: 'table ip rawnat {\n chain post {\n type nat hook postrouting priority srcnat;\n oifname "eth0" masquerade\n }\n}\n',
    });
  } else {
    await sysctl('net.ipv4.ip_forward=1');
    await sysctl('net.ipv4.conf.tap0.proxy_arp=1');
    await ip('addr', 'add', `${HOST_IP}/32`, 'dev', 'tap0');
    await ip('route', 'add', `${GUEST_IP.route}/32`, 'dev', 'tap0');
    await ip('neigh', 'add', 'proxy', GUEST_IP.route, 'dev', 'eth0');
  }
}

async function throughput(w: NetWorld, g: DirectGuest, port: number, bytes: number): Promise<number> {
  const srv = await w.tcpServer(w.outside, port, bytes);
  await g.run(`dd if=/dev/zero bs=65536 count=${bytes / 65536} 2>/dev/null | nc -w 5 ${OUTSIDE_IP} ${port}`, 300_000);
  const r = await srv.result(1, 60_000);
  srv.child.kill();
  if (r.bytes < bytes) throw new Error(`only ${r.bytes} of ${bytes} bytes arrived`);
  return r.bytes / (r.ms / 1000) / 1e6;
}

/** Median RTT (ms) of `count` pings from the guest. */
async function latency(g: DirectGuest, count: number): Promise<number> {
  const out = await g.ok(`ping -c ${count} -i 0.2 -W 2 ${OUTSIDE_IP}`, 120_000);
  const times = [...out.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
  if (times.length < count / 2) throw new Error(`ping: only ${times.length} replies`);
  return median(times);
}

async function benchMode(mode: Mode, rounds: number, bytes: number, pings: number): Promise<Array<[string, string | number]>> {
  const wx = await NetWorld.create(`bx${mode[0]}`);
  const wr = await NetWorld.create(`br${mode[0]}`);
  const guests: DirectGuest[] = [];
  let nm: NetworkManager | undefined;
  try {
    const config = { ...defaultDaemonConfig(), stateDir: wx.dir, networkScript: `network-${mode} netdev=eth0`, vifScript: `vif-${mode}` };
    nm = new NetworkManager({ config, instanceId: 'bench', netns: wx.host });
    const p = await nm.plug(1, 'bench', { devid: 0, ip: GUEST_IP[mode] }, { ethIndex: 0 });
    await rawSetup(wr, mode);
    const [gx, gr] = await Promise.all([
      DirectGuest.start({ netns: wx.host, name: 'xeno', domid: 1, dir: wx.dir, nics: [p.nic], extra: p.guestArg!, track: (pid) => wx.track(pid) }),
      DirectGuest.start({
        netns: wr.host, name: 'raw', domid: 1, dir: wr.dir, nics: [{ devid: 0, ifname: 'tap0', mac: p.nic.mac }],
        extra: `xeno.net=eth0:${GUEST_NET[mode]}`, track: (pid) => wr.track(pid),
      }),
    ]);
    guests.push(gx, gr);
    // Warm up: ARP, conntrack, TCG's translated code.
    await gx.ok(`ping -c 2 -W 2 ${OUTSIDE_IP}`);
    await gr.ok(`ping -c 2 -W 2 ${OUTSIDE_IP}`);
    const tx: number[] = [];
    const tr: number[] = [];
    const lx: number[] = [];
    const lr: number[] = [];
    let port = 6000;
    // Only the measured guest runs: under TCG the other one would compete for the same CPUs.
    const only = async (g: DirectGuest) => {
      for (const o of guests) if (o !== g) await o.setRunning(false);
      await g.setRunning(true);
    };
    for (let i = 0; i < rounds; i++) {
      const order: Array<'x' | 'r'> = i % 2 ? ['r', 'x'] : ['x', 'r'];
      for (const which of order) {
        await only(which === 'x' ? gx : gr);
        if (which === 'x') {
          tx.push(await throughput(wx, gx, port++, bytes));
          lx.push(await latency(gx, pings));
        } else {
          tr.push(await throughput(wr, gr, port++, bytes));
          lr.push(await latency(gr, pings));
        }
      }
    }
    const [mtx, mtr, mlx, mlr] = [median(tx), median(tr), median(lx), median(lr)];
    // Both guests are DirectGuests (test/net/guest.ts), which QEMU runs under TCG whatever the host offers.
    const b = (operation: string, unit: string) => ({ bench: 'net', operation: `${mode}: ${operation}`, unit, accel: 'tcg' });
    results.push({ ...b('guest -> outside throughput', 'MB/s'), raw: mtr, xeno: mtx, target: '>= 0.95x raw', met: mtx >= 0.95 * mtr });
    plusRow(b('ping RTT', 'ms'), mlr, mlx, 0.1);
    const spread = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(' ');
    return [
      [`${mode}: rounds, xeno MB/s`, spread(tx)],
      [`${mode}: rounds, plain MB/s`, spread(tr)],
      [`${mode}: xeno vif throughput (MB/s, median)`, mtx],
      [`${mode}: plain tap throughput (MB/s, median)`, mtr],
      [`${mode}: throughput ratio xeno/plain (target >= 0.95)`, mtx / mtr],
      [`${mode}: xeno vif ping RTT (ms, median)`, mlx],
      [`${mode}: plain tap ping RTT (ms, median)`, mlr],
      [`${mode}: added latency per ping (ms, target <= 0.1)`, mlx - mlr],
    ];
  } finally {
    for (const g of guests) g.kill();
    nm?.close();
    await wx.destroy();
    await wr.destroy();
  }
}

export async function run(): Promise<void> {
  const rounds = arg('rounds', 5);
  const bytes = arg('mb', 4) * 1024 * 1024;
  const pings = arg('pings', 20);
  const modes = (process.env.XENO_NET_MODES?.split(',') ?? ['bridge', 'nat', 'route']) as Mode[];
  const rows: Array<[string, string | number]> = [];
  for (const mode of modes) rows.push(...(await benchMode(mode, rounds, bytes, pings)));
  process.stdout.write(`(this host's accelerator: ${await hostAccel('/tmp')}; the net bench's guests run under TCG either way)\n`);
  report(`guest -> outside, xeno vif vs plain tap (TCG guests, ${rounds} rounds, ${bytes / 1048576} MiB per transfer, ${pings} pings)`, rows);
}
