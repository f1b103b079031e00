/** Runtime control commands: mem-set, mem-max, vcpu-list, vcpu-set, vcpu-pin, sched-credit. */
import type { Command } from 'commander';
import { domPath } from '../../client/client.js';
import { formatVcpuList } from '../../host/vcpus.js';
import type { MemMaxResult, MemSetResult, SchedCreditRow, VcpuListRow, VcpuSetResult } from '../../toolstack/runtime.js';
import { api, json, out, warn } from '../context.js';

/** `xm sched-credit` with no setting: `Name ID Weight Cap`. */
export function formatSchedCredit(rows: SchedCreditRow[]): string {
  const lines = [`${'Name'.padEnd(33)} ${'ID'.padStart(4)} ${'Weight'.padStart(6)} ${'Cap'.padStart(4)}`];
  for (const r of rows) lines.push(`${r.name.padEnd(32)} ${String(r.id).padStart(5)} ${String(r.weight).padStart(6)} ${String(r.cap).padStart(4)}`);
  return lines.join('\n') + '\n';
}

/** The vcpu-list table; a vcpu the guest has not released yet is marked after its affinity. */
export function formatVcpuTable(rows: VcpuListRow[]): string {
  return formatVcpuList(rows.map((r) => (r.pending ? { ...r, affinity: `${r.affinity} (unplug pending)` } : r)));
}

function seconds(v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${what}: '${v}' is not a number of seconds`);
  return n;
}

export function registerRuntimeCommands(program: Command): void {
  program
    .command('mem-set')
    .description("set a domain's memory (balloon target); waits until the guest reaches it")
    .argument('<dom>', 'name or id')
    .argument('<size>', 'MiB, or a size with a b/k/m/g/t suffix')
    .option('--no-wait', 'return once the target is set, without waiting for the guest')
    .option('-t, --timeout <seconds>', 'how long to wait for the balloon (default 30)')
    .action(async (dom: string, size: string, opts: { wait: boolean; timeout?: string }) => {
      const r = await api().post<MemSetResult>(domPath(dom, '/mem-set'), { memory: size, wait: opts.wait, timeout: seconds(opts.timeout, 'mem-set --timeout') });
      if (r.reached || !opts.wait) return;
      // A paused guest moves its balloon once it runs, a newer target replaced this one: notes, not failures.
      if (r.deferred || r.superseded) {
        if (r.message) warn(r.message);
        return;
      }
      throw new Error(r.message ?? `the balloon of ${dom} did not reach ${r.target} MiB`);
    });

  program
    .command('mem-max')
    .description("set a domain's maximum memory")
    .argument('<dom>', 'name or id')
    .argument('<size>', 'MiB, or a size with a b/k/m/g/t suffix')
    .action(async (dom: string, size: string) => {
      const r = await api().post<MemMaxResult>(domPath(dom, '/mem-max'), { maxmem: size });
      if (r.message) warn(r.message);
    });

  program
    .command('vcpu-list')
    .description('list the vcpus of domains: host CPU, state, CPU time, affinity')
    .argument('[doms...]', 'names or ids (default: all)')
    .option('--json', 'as JSON')
    .action(async (doms: string[], opts: { json?: boolean }) => {
      let rows: VcpuListRow[];
      if (!doms.length) rows = (await api().get<{ vcpus: VcpuListRow[] }>('/v1/vcpus')).vcpus;
      else rows = (await Promise.all(doms.map((d) => api().get<{ vcpus: VcpuListRow[] }>(domPath(d, '/vcpus'))))).flatMap((r) => r.vcpus);
      if (opts.json) json(rows);
      else out(formatVcpuTable(rows));
    });

  program
    .command('vcpu-set')
    .description('set the number of vcpus of a running domain (hot-plug/unplug, up to maxvcpus)')
    .argument('<dom>', 'name or id')
    .argument('<count>', 'number of vcpus')
    .option('-t, --timeout <seconds>', 'how long to wait for the guest to release unplugged vcpus (default 30)')
    .option('--json', 'print the result (with the CPUs online in the guest, when its agent answers) as JSON')
    .action(async (dom: string, count: string, opts: { timeout?: string; json?: boolean }) => {
      const r = await api().post<VcpuSetResult>(domPath(dom, '/vcpu-set'), { vcpus: count, timeout: seconds(opts.timeout, 'vcpu-set --timeout') });
      if (r.pending.length) throw new Error(r.message ?? `vcpu unplug pending: ${r.pending.join(', ')}`);
      if (opts.json) json(r);
    });

  program
    .command('vcpu-pin')
    .description('pin a vcpu (or all) of a domain to host CPUs')
    .argument('<dom>', 'name or id')
    .argument('<vcpu>', "vcpu index, or 'all'")
    .argument('<cpus>', "'all' or a list like 0-3,5,^1")
    .action(async (dom: string, vcpu: string, cpus: string) => {
      await api().post(domPath(dom, '/vcpu-pin'), { vcpu, cpus });
    });

  program
    .command('sched-credit')
    .description('get or set the credit scheduler weight and cap of domains')
    .option('-d, --domain <dom>', 'the domain')
    .option('-w, --weight <weight>', 'weight, 1-65535 (default 256)')
    .option('-c, --cap <cap>', 'cap in percent of one CPU (0 = none)')
    .option('--json', 'as JSON')
    .action(async (opts: { domain?: string; weight?: string; cap?: string; json?: boolean }) => {
      if (opts.weight === undefined && opts.cap === undefined) {
        const q = opts.domain === undefined ? '' : `?dom=${encodeURIComponent(opts.domain)}`;
        const { domains } = await api().get<{ domains: SchedCreditRow[] }>(`/v1/sched-credit${q}`);
        if (opts.json) json(domains);
        else out(formatSchedCredit(domains));
        return;
      }
      if (opts.domain === undefined) throw new Error('sched-credit: setting a weight or cap needs a domain (-d DOM)');
      await api().post(domPath(opts.domain, '/sched-credit'), { weight: opts.weight, cap: opts.cap });
    });
}
