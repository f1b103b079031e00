/**
 * Domain lifecycle states and the legal operations in each: one place decides what may happen to a
 * domain, the toolstack asks it before acting (as Firecracker's VM state gates its actions).
 */

export type DomainState =
  | 'starting' // QEMU launched, not yet answering QMP
  | 'running' // executing (shown r or b, from its vcpu threads)
  | 'paused' // stopped by the admin (p)
  | 'shutdown' // the guest shut down and on_poweroff/on_reboot said preserve (s)
  | 'crashed' // the guest panicked and on_crash said preserve (c)
  | 'dying' // being destroyed (d)
  | 'saving' // its state is being written to a file
  | 'migrating'; // its state is being sent to another host

export type DomainOp =
  | 'shutdown'
  | 'reboot'
  | 'destroy'
  | 'pause'
  | 'unpause'
  | 'mem-set'
  | 'vcpu-set'
  | 'vcpu-pin'
  | 'sched'
  | 'save'
  | 'migrate'
  | 'console'
  | 'network'
  | 'block';

const LEGAL: Record<DomainState, readonly DomainOp[]> = {
  starting: ['destroy', 'console'],
  running: ['shutdown', 'reboot', 'destroy', 'pause', 'mem-set', 'vcpu-set', 'vcpu-pin', 'sched', 'save', 'migrate', 'console', 'network', 'block'],
  paused: ['destroy', 'unpause', 'mem-set', 'vcpu-pin', 'sched', 'save', 'migrate', 'console', 'shutdown', 'network', 'block'],
  shutdown: ['destroy', 'console', 'reboot'],
  crashed: ['destroy', 'console', 'reboot'],
  dying: [],
  // destroy preempts the save or migration (toolstack long operations)
  saving: ['console', 'destroy'],
  migrating: ['console', 'destroy'],
};

export function isLegal(state: DomainState, op: DomainOp): boolean {
  return LEGAL[state].includes(op);
}

/** xm/xl's six state flags `rbpscd`: one letter set, the others `-`. */
export function stateFlags(state: DomainState, executing: boolean): string {
  const flags = ['-', '-', '-', '-', '-', '-'];
  switch (state) {
    case 'running':
    case 'starting':
    case 'saving':
    case 'migrating':
      flags[executing ? 0 : 1] = executing ? 'r' : 'b';
      break;
    case 'paused':
      flags[2] = 'p';
      break;
    case 'shutdown':
      flags[3] = 's';
      break;
    case 'crashed':
      flags[4] = 'c';
      break;
    case 'dying':
      flags[5] = 'd';
      break;
  }
  return flags.join('');
}
