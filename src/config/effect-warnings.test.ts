import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DomainConfig } from '../model/domain-config.js';
import { effectWarnings } from './effect-warnings.js';

const base: DomainConfig = {
  name: 'w', type: 'pv', memory: 128, maxmem: 128, vcpus: 1, maxvcpus: 1, kernel: '/k', disks: [], vifs: [],
  onPoweroff: 'destroy', onReboot: 'restart', onCrash: 'destroy',
};

test('bridge= of a vif that is routed (vif-nat, vif-route, the daemon default included) warns; a bridged one does not', () => {
  const vifs = [{ devid: 0, bridge: 'xenbr0' }, { devid: 1, bridge: 'br1', script: 'vif-bridge' }, { devid: 2 }];
  assert.deepEqual(effectWarnings({ ...base, vifs }, 'vif-nat'), [
    'warning: vif 0: bridge=xenbr0 has no effect: the vif uses vif-nat, which routes the guest instead of bridging it',
  ]);
  assert.deepEqual(effectWarnings({ ...base, vifs }, 'vif-bridge'), []);
  assert.match(effectWarnings({ ...base, vifs: [{ devid: 0, bridge: 'b', script: '/etc/xen/scripts/vif-route' }] }, 'vif-bridge')[0]!, /uses vif-route/);
});

test('disk names: a lone xvdb and a Xen root= are reported for a kernel boot, not for an hvm one', () => {
  const disks = [{ target: '/d', format: 'raw' as const, vdev: 'xvdb', access: 'rw' as const, devtype: 'disk' as const }];
  assert.deepEqual(effectWarnings({ ...base, disks, root: '/dev/xvdb1' }, 'vif-bridge'), [
    'warning: disk xvdb appears in the guest as /dev/vda (virtio names disks by rank: xeno keeps the vdev order, not gaps)',
    "warning: kernel command line: /dev/xvdb1 -> /dev/vda1 (the guest's disks are virtio-blk)",
  ]);
  assert.equal(effectWarnings({ ...base, type: 'hvm', kernel: undefined, disks, root: '/dev/xvdb1' }, 'vif-bridge').length, 1);
});
