/** The API's shapes the page reads (src/model/api.ts and stats.ts on the daemon's side). */
export interface DomainInfo {
  id: number;
  name: string;
  uuid: string;
  state: string;
  stateFlags: string;
  memory: number;
  maxmem: number;
  vcpus: number;
  maxvcpus: number;
  cpuTime: number;
  uptime: number;
  accel?: string;
}
export interface HostInfo {
  host: string;
  release: string;
  machine: string;
  nr_cpus: number;
  total_memory: number;
  free_memory: number;
  dom0_min_mem: number;
  accel: string;
  accel_reason: string;
  qemu_version: string;
  machine_type: string;
  xeno_version: string;
  network_mode: string;
}
export interface DomainSample {
  t: number;
  state: string;
  cpuPct: number | null;
  memTarget: number;
  memActual: number | null;
  maxmem: number;
  vcpus: number;
  nets: Array<{ vif: string; rxBytes: number; txBytes: number }>;
  vbds: Array<{ vdev: string; rdBytes: number; wrBytes: number }>;
}
export interface StatsEvent {
  seq: number;
  ts: number;
  domid: number | null;
  name: string | null;
  kind: string;
  message: string;
}
export interface StatsResponse {
  step: number;
  host: { samples: Array<{ t: number; cpuPct: number | null; freeMem: number; totalMem: number }> };
  domains: Array<{ id: number; name: string; samples: DomainSample[] }>;
  events: StatsEvent[];
}
