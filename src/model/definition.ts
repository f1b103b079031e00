/** A managed guest: defined once (xm new), started by name or at boot, whether it runs or not. */
import type { DomainConfig } from './domain-config.js';

export interface DomainDefinition {
  name: string;
  config: DomainConfig;
  autostart: boolean;
  autostartOrder: number;
  autostartDelay: number;
  /** Unix seconds. */
  definedAt: number;
}

/** One row of `xeno list --all` for a defined guest that does not run. */
export interface OffDomainInfo {
  id: null;
  name: string;
  uuid: string | null;
  state: 'off';
  stateFlags: '------';
  memory: number;
  maxmem: number;
  vcpus: number;
  maxvcpus: number;
  cpuTime: 0;
  autostart: boolean;
}
