/**
 * `GET /v1/stats`: what xenod's one sampler (src/metrics/sampler.ts) recorded, every second, for
 * the host and every domain. Memory in bytes, CPU in seconds and percent of ONE host CPU (as
 * xentop: a 2-vcpu guest can show 200 %), network from the guest's side (rx = what it received).
 * A field is null where no value was read (e.g. no balloon answer, or the first CPU sample).
 */
/** One line of the event log (the shape of `xeno dmesg`). */
export interface StatsEvent {
  seq: number;
  ts: number;
  domid: number | null;
  name: string | null;
  kind: string;
  message: string;
}

export interface HostSample {
  /** Sample time, seconds since the epoch (ms precision): the key shared with /metrics. */
  t: number;
  /** Busy share of all host CPUs, 0-100. */
  cpuPct: number | null;
  /** Bytes, xeno's accounting (as `xeno info`). */
  freeMem: number;
  totalMem: number;
}

export interface NetSample {
  /** The backend interface, e.g. vif3.0. */
  vif: string;
  rxBytes: number;
  txBytes: number;
  rxPackets: number;
  txPackets: number;
}

export interface VbdSample {
  vdev: string;
  rdBytes: number;
  wrBytes: number;
  rdReqs: number;
  wrReqs: number;
}

export interface DomainSample {
  t: number;
  state: string;
  /** xm's six flags, e.g. `-b----`. */
  flags: string;
  cpuSec: number;
  cpuPct: number | null;
  memTarget: number;
  memActual: number | null;
  maxmem: number;
  vcpus: number;
  nets: NetSample[];
  vbds: VbdSample[];
}

export interface DomainSeries {
  id: number;
  name: string;
  uuid: string;
  type: string;
  samples: DomainSample[];
}

export interface StatsResponse {
  /** Seconds between samples in this answer (1 or 60, or the step asked for). */
  step: number;
  host: { samples: HostSample[] };
  domains: DomainSeries[];
  /** Lifecycle events (pause, mem-set, save, migrate, reboot...) within the window. */
  events: StatsEvent[];
}
