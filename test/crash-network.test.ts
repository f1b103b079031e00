/**
 * Crash consistency of the host network: xenod (NAT mode, in a private network world) is killed by
 * the test-only XENO_TEST_CRASH_AT hook in the middle of create, destroy, network-attach and
 * network-detach; at its next start the taps, nftables chains and dnsmasq entries match the domains
 * and their stored configs, and every QEMU is a listed domain.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { DomainDetail } from '../src/model/api.js';
import { GUEST, TestDaemon } from './helpers/harness.js';
import { NetWorld } from './net/world.js';

describe('xenod killed during network operations converges (NAT mode)', { timeout: 900_000 }, () => {
  let w: NetWorld;
  let d: TestDaemon;

  before(async () => {
    w = await NetWorld.create('cn');
    d = new TestDaemon({
      wrap: ['ip', 'netns', 'exec', w.host],
      args: ['--accel', 'tcg'],
      configText: `(network-script 'network-nat netdev=eth0')\n(vif-script vif-nat)\n`,
    });
    await d.start();
  });
  after(async () => {
    await d?.cleanup();
    await w?.destroy();
  });

  async function crashAt(point: string, action: () => Promise<unknown>): Promise<void> {
    await d.stop();
    await d.start({ env: { XENO_TEST_CRASH_AT: point } });
    await action().catch(() => undefined);
    await d.waitExit();
    await d.start();
  }

  /** The vif taps on the host (vifD.N), the nft chains named after them, dnsmasq's dhcp-host lines. */
  async function hostVifs(): Promise<{ taps: string[]; chains: string[]; dhcp: string[] }> {
    const dump = await w.hostDump();
    const taps = [...new Set([...dump.matchAll(/^(vif\d+\.\d+)\s/gm)].map((m) => m[1]!))].sort();
    const chains = [...new Set([...dump.matchAll(/chain (vif\d+\.\d+) \{/g)].map((m) => m[1]!))].sort();
    let conf = '';
    try {
      conf = readFileSync(path.join(d.stateDir, 'network', 'dnsmasq.conf'), 'utf8');
    } catch {
      /* no dnsmasq */
    }
    return { taps, chains, dhcp: [...conf.matchAll(/^dhcp-host=([^,\s]+)/gm)].map((m) => m[1]!) };
  }

  /** Host state == what the domains' stored configs say; every QEMU is listed. */
  async function assertMatches(): Promise<void> {
    const rows = (await d.rows()).filter((r) => r.id !== 0);
    const listed = new Set(rows.map((r) => r.pid));
    for (const pid of d.qemusOnHost()) assert.ok(listed.has(pid), `QEMU ${pid} is not listed`);
    const want: string[] = [];
    const macs: string[] = [];
    for (const r of rows) {
      assert.ok(!['starting', 'dying'].includes(r.state), `${r.name} is ${r.state}`);
      const det = await d.client.get<DomainDetail>(`/v1/domains/${r.name}`);
      const list = await d.client.get<{ vifs: Array<{ devid: number; ifname: string; mac: string }> }>(`/v1/domains/${r.name}/network`);
      assert.deepEqual(list.vifs.map((v) => v.devid).sort(), det.config.vifs.map((v) => v.devid).sort(), `${r.name}: backends == stored config`);
      for (const v of list.vifs) {
        want.push(v.ifname);
        macs.push(v.mac);
      }
    }
    const host = await hostVifs();
    assert.deepEqual(host.taps, want.sort(), 'taps');
    assert.deepEqual(host.chains, want.sort(), 'nft chains');
    assert.deepEqual(host.dhcp.sort(), macs.sort(), 'dnsmasq entries');
  }

  it('create killed after the vifs were plugged, before QEMU: no tap, chain or dhcp entry is left', async () => {
    await d.createGuest('keep', { vif: "['']" });
    await d.waitConsole('keep', /xeno-guest: up/, 120_000);
    const cfg = d.writeCfg('half', `name = "half"\nkernel = "${GUEST.kernel}"\nramdisk = "${GUEST.ramdisk}"\nextra = "quiet"\nmemory = 128\nvif = [ '' ]\n`);
    await crashAt('boot:plugged', () => d.xeno(['create', cfg]));
    assert.equal(await d.row('half'), undefined);
    await assertMatches();
  });

  it('network-attach killed after the backend, before QEMU has the NIC: the vif is dropped everywhere', async () => {
    await crashAt('network-attach:plugged', () => d.xeno(['network-attach', 'keep', 'ip=10.0.0.22']));
    await assertMatches();
    assert.equal((await d.client.get<DomainDetail>('/v1/domains/keep')).config.vifs.length, 1);
  });

  it('network-attach killed once QEMU has the NIC: the vif is kept everywhere', async () => {
    await crashAt('network-attach:added', () => d.xeno(['network-attach', 'keep', 'ip=10.0.0.22']));
    await assertMatches();
    assert.equal((await d.client.get<DomainDetail>('/v1/domains/keep')).config.vifs.length, 2);
  });

  it('network-detach killed once the guest released the NIC: the backend and the config entry go', async () => {
    await crashAt('network-detach:released', () => d.xeno(['network-detach', 'keep', '1']));
    await assertMatches();
    assert.equal((await d.client.get<DomainDetail>('/v1/domains/keep')).config.vifs.length, 1);
  });

  it('destroy killed after QEMU was killed, before the backends went: they are removed', async () => {
    await crashAt('destroy:killed', () => d.xeno(['destroy', 'keep']));
    assert.equal(await d.row('keep'), undefined);
    await assertMatches();
  });
});
