/**
 * network-attach / network-detach / network-list / network-rules on a domain: the host-side
 * backend from the NetworkManager, the guest side over QMP (netdev_add + device_add of a
 * virtio-net-pci; device_del, answered by the guest through DEVICE_DELETED, then netdev_del).
 * The domain's stored config follows, so a restart, restore or migration brings the vif back.
 */
import { XenoError } from '../../common/errors.js';
import { parseVifSpec } from '../../config/vif-spec.js';
import { waitVmEvent, type EventWait } from '../../hypervisor/vm-events.js';
import type { Vm } from '../../hypervisor/backend.js';
import type { VifSpec } from '../../model/domain-config.js';
import { unlessAborted } from '../../toolstack/long-ops.js';
import type { DomainRecord } from '../../toolstack/store.js';
import type { Toolstack } from '../../toolstack/toolstack.js';
import type { NetworkListResult, VifListEntry } from '../../model/api.js';
import type { NetworkManager, VifRules } from './network-manager.js';
import type { VifState } from './state.js';

export type { VifListEntry, NetworkListResult };

function entryOf(st: VifState): VifListEntry {
  return {
    devid: st.devid, ifname: st.ifname, mac: st.mac, mode: st.mode, ips: st.ips, dhcp: st.dhcp, bridge: st.bridge,
    hostAddr: st.hostAddr, rate: st.rate, model: st.model ?? 'virtio-net', guestNet: st.guestArg,
  };
}

export function networkList(ts: Toolstack, nm: NetworkManager, dom: string): NetworkListResult {
  const rec = ts.resolve(dom);
  return { domid: rec.id, name: rec.name, vifs: nm.list(rec.id).map(entryOf) };
}

export async function networkRules(ts: Toolstack, nm: NetworkManager, dom: string): Promise<{ domid: number; name: string; vifs: VifRules[] }> {
  const rec = ts.resolve(dom);
  return { domid: rec.id, name: rec.name, vifs: await nm.rules(rec.id) };
}

function saveVifs(ts: Toolstack, rec: DomainRecord, vifs: VifSpec[]): void {
  const fresh = ts.deps.store.get(rec.id) ?? rec;
  ts.deps.store.update(rec.id, { config: { ...fresh.config, vifs } });
}

/** Hot-plugs a vif described by an xl vif spec; its devid is the next free one. */
export async function networkAttach(ts: Toolstack, nm: NetworkManager, dom: string, spec: string): Promise<VifListEntry> {
  return ts.withDomain(dom, 'network', async (rec) => {
    const vm = ts.liveOf(rec).vm;
    const used = new Set([...rec.config.vifs.map((v) => v.devid), ...nm.list(rec.id).map((v) => v.devid)]);
    let devid = 0;
    while (used.has(devid)) devid++;
    const vif = parseVifSpec(spec, devid);
    ts.validateChange(rec, { ...rec.config, vifs: [...rec.config.vifs, vif] }, 'network-attach');
    const { nic } = await nm.plug(rec.id, rec.name, vif, { ethIndex: rec.config.vifs.length });
    let netdevAdded = false;
    try {
      await vm.command('netdev_add', { type: 'tap', id: `net${devid}`, ifname: nic.ifname, script: 'no', downscript: 'no' });
      netdevAdded = true;
      await vm.command('device_add', { driver: nic.model ?? 'virtio-net-pci', netdev: `net${devid}`, mac: nic.mac, id: `nic${devid}` });
    } catch (e) {
      if (netdevAdded) await vm.command('netdev_del', { id: `net${devid}` }).catch(() => undefined);
      await nm.unplug(rec.id, devid).catch(() => undefined);
      throw new XenoError('QEMU_ERROR', `cannot hot-plug vif ${devid} into ${rec.name}: ${(e as Error).message}`);
    }
    saveVifs(ts, rec, [...rec.config.vifs, vif]);
    ts.event(rec, 'network-attach', `vif ${devid} (${nic.ifname}, ${nic.mac}) attached to ${rec.name}`);
    const st = nm.list(rec.id).find((v) => v.devid === devid)!;
    // No kernel command line for a hot-plugged NIC: say what the guest should configure.
    return entryOf(st);
  });
}

function waitDeviceDeleted(vm: Vm, id: string, timeoutMs: number): EventWait {
  return waitVmEvent(vm, (e) => e.event === 'DEVICE_DELETED' && e.data.device === id, timeoutMs);
}

/** Unplugs a vif (by devid or MAC): the guest releases the NIC, then its backend is removed. */
export async function networkDetach(ts: Toolstack, nm: NetworkManager, dom: string, which: string, timeoutMs = 30_000): Promise<{ devid: number; ifname: string }> {
  return ts.withDomain(dom, 'network', (rec) => ts.longOperation(rec.id, 'network-detach', async (signal) => {
    const vifs = nm.list(rec.id);
    const st = /^\d+$/.test(which) ? vifs.find((v) => v.devid === Number(which)) : vifs.find((v) => v.mac === which.toLowerCase());
    if (!st) throw new XenoError('BAD_REQUEST', `${rec.name} has no vif ${which} (network-list shows its vifs)`);
    const vm = ts.liveOf(rec).vm;
    const id = `nic${st.devid}`;
    const wait = waitDeviceDeleted(vm, id, timeoutMs);
    try {
      await vm.command('device_del', { id });
    } catch (e) {
      wait.cancel();
      // Already gone from QEMU (an earlier detach that timed out and completed since): go on.
      if (!/not found/i.test((e as Error).message)) throw new XenoError('QEMU_ERROR', `device_del ${id}: ${(e as Error).message}`);
    }
    const released = await unlessAborted(wait.done, signal);
    if (released === 'aborted') {
      // destroy preempts the wait: the vif goes with the domain (its teardown removes the backend).
      wait.cancel();
      throw signal.reason;
    }
    if (!released) {
      const still = await deviceExists(vm, id);
      if (still) {
        throw new XenoError('TIMEOUT', `${rec.name} did not release vif ${st.devid} within ${timeoutMs / 1000} s (the guest must support PCI hot-unplug); the vif stays`);
      }
    }
    await vm.command('netdev_del', { id: `net${st.devid}` }).catch(() => undefined);
    await nm.unplug(rec.id, st.devid);
    saveVifs(ts, rec, rec.config.vifs.filter((v) => v.devid !== st.devid));
    ts.event(rec, 'network-detach', `vif ${st.devid} (${st.ifname}) detached from ${rec.name}`);
    return { devid: st.devid, ifname: st.ifname };
  }));
}

async function deviceExists(vm: Vm, id: string): Promise<boolean> {
  try {
    const items = await vm.command<Array<{ name: string }>>('qom-list', { path: `/machine/peripheral/${id}` });
    return Array.isArray(items);
  } catch {
    return false;
  }
}
