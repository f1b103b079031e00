/** Waiting for one QMP event from a VM (a device's DEVICE_DELETED...), cancellable, ended by QEMU's exit. */
import type { Vm } from './backend.js';
import type { QmpEvent } from './qemu/qmp.js';

export interface EventWait {
  /** true when the event came, false on timeout, cancel or QEMU's exit. */
  done: Promise<boolean>;
  cancel: () => void;
}

export function waitVmEvent(vm: Vm, match: (e: QmpEvent) => boolean, timeoutMs: number): EventWait {
  let cancel!: () => void;
  const done = new Promise<boolean>((resolve) => {
    const onEvent = (e: QmpEvent) => {
      if (match(e)) finish(true);
    };
    const onExit = () => finish(false);
    const timer = setTimeout(() => finish(false), timeoutMs);
    const finish = (ok: boolean) => {
      clearTimeout(timer);
      vm.off('qmp-event', onEvent);
      vm.off('exit', onExit);
      resolve(ok);
    };
    cancel = () => finish(false);
    vm.on('qmp-event', onEvent);
    vm.once('exit', onExit);
  });
  return { done, cancel };
}
