/**
 * The Prometheus text exposition (prom-client), filled at each scrape from the sampler's newest
 * tick, so `xeno top`, GET /v1/stats and /metrics show the same numbers; `xeno_sample_timestamp_seconds`
 * names that tick (the `t` of its /v1/stats samples). Names follow Prometheus' rules: base units
 * (seconds, bytes), `_total` on counters, every domain series labelled `domain` and `domid`.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { STATES, latestSamples, type Sampler } from './sampler.js';

const D = ['domain', 'domid'] as const;

export class MetricsExporter {
  readonly registry = new Registry();
  private readonly r = this.registry;
  readonly operations = new Counter({ name: 'xeno_operations_total', help: 'Domain operations by result (ok or error)', labelNames: ['op', 'result'], registers: [this.r] });
  readonly durations = new Histogram({
    name: 'xeno_operation_duration_seconds',
    help: 'How long domain operations took, request to answer',
    labelNames: ['op'],
    buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
    registers: [this.r],
  });
  private readonly sampleTime = new Gauge({ name: 'xeno_sample_timestamp_seconds', help: 'Time of the sampler tick these values come from (the t of GET /v1/stats)', registers: [this.r] });
  private readonly hostFree = new Gauge({ name: 'xeno_host_memory_free_bytes', help: 'Host memory free for guests (as xeno info)', registers: [this.r] });
  private readonly hostTotal = new Gauge({ name: 'xeno_host_memory_total_bytes', help: 'Host memory (as xeno info)', registers: [this.r] });
  private readonly cpu = new Counter({ name: 'xeno_domain_cpu_seconds_total', help: 'CPU time used by the domain\'s vcpus', labelNames: D, registers: [this.r] });
  private readonly mem = new Gauge({ name: 'xeno_domain_memory_bytes', help: 'Domain memory: balloon target, actual (guest-reported), max', labelNames: [...D, 'kind'], registers: [this.r] });
  private readonly vcpus = new Gauge({ name: 'xeno_domain_vcpus', help: 'Online vcpus', labelNames: D, registers: [this.r] });
  private readonly state = new Gauge({ name: 'xeno_domain_state', help: '1 for the state the domain is in, 0 for the others', labelNames: [...D, 'state'], registers: [this.r] });
  private readonly info = new Gauge({ name: 'xeno_domain_info', help: 'Domain identity (always 1)', labelNames: [...D, 'name', 'uuid', 'type'], registers: [this.r] });
  private readonly net = {
    rxBytes: this.counter('xeno_domain_network_receive_bytes_total', 'Bytes the guest received on the vif', 'vif'),
    txBytes: this.counter('xeno_domain_network_transmit_bytes_total', 'Bytes the guest sent on the vif', 'vif'),
    rxPackets: this.counter('xeno_domain_network_receive_packets_total', 'Packets the guest received on the vif', 'vif'),
    txPackets: this.counter('xeno_domain_network_transmit_packets_total', 'Packets the guest sent on the vif', 'vif'),
  };
  private readonly blk = {
    rdBytes: this.counter('xeno_domain_block_read_bytes_total', 'Bytes read from the disk', 'vdev'),
    wrBytes: this.counter('xeno_domain_block_written_bytes_total', 'Bytes written to the disk', 'vdev'),
    rdReqs: this.counter('xeno_domain_block_read_requests_total', 'Read requests to the disk', 'vdev'),
    wrReqs: this.counter('xeno_domain_block_write_requests_total', 'Write requests to the disk', 'vdev'),
  };
  private readonly perScrape: Array<Counter<string> | Gauge<string>> = [this.cpu, this.mem, this.vcpus, this.state, this.info, ...Object.values(this.net), ...Object.values(this.blk)];

  constructor(private readonly sampler: Sampler) {}

  private counter(name: string, help: string, dev: string): Counter<string> {
    return new Counter({ name, help, labelNames: [...D, dev], registers: [this.r] });
  }

  /** Record one finished operation. */
  observe(op: string, ok: boolean, seconds: number): void {
    this.operations.inc({ op, result: ok ? 'ok' : 'error' });
    this.durations.observe({ op }, seconds);
  }

  /** The exposition text of the newest tick. */
  async scrape(): Promise<string> {
    for (const m of this.perScrape) m.reset(); // a destroyed domain's series go away
    const latest = latestSamples(this.sampler);
    if (latest) {
      this.sampleTime.set(latest.host.t);
      this.hostFree.set(latest.host.freeMem);
      this.hostTotal.set(latest.host.totalMem);
      for (const { track, sample: s } of latest.domains) {
        const l = { domain: track.name, domid: String(track.id) };
        this.cpu.inc(l, s.cpuSec);
        this.mem.set({ ...l, kind: 'target' }, s.memTarget);
        if (s.memActual !== null) this.mem.set({ ...l, kind: 'actual' }, s.memActual);
        this.mem.set({ ...l, kind: 'max' }, s.maxmem);
        this.vcpus.set(l, s.vcpus);
        for (const st of STATES) this.state.set({ ...l, state: st }, st === s.state ? 1 : 0);
        this.info.set({ ...l, name: track.name, uuid: track.uuid, type: track.type }, 1);
        for (const n of s.nets) for (const k of ['rxBytes', 'txBytes', 'rxPackets', 'txPackets'] as const) this.net[k].inc({ ...l, vif: n.vif }, n[k]);
        for (const b of s.vbds) for (const k of ['rdBytes', 'wrBytes', 'rdReqs', 'wrReqs'] as const) this.blk[k].inc({ ...l, vdev: b.vdev }, b[k]);
      }
    }
    return this.registry.metrics();
  }
}
