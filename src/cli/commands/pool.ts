/**
 * The pool seen from any of its hosts (docs/pool.md): host-list, host-disable / host-enable,
 * pool-eject, and list --pool. Each asks the local xenod, which reads etcd or asks the other hosts.
 */
import type { Command } from 'commander';
import { api, json, out, warn } from '../context.js';

interface HostRow {
  name: string;
  state: string;
  address: string;
  memFreeKiB: number;
  memTotalKiB: number;
  cpus: number;
  accel: string;
  guests: number;
  leaseAgeS: number | null;
}

interface PoolCpu {
  model: string;
  accel: string;
  note: string;
}

interface PoolDomainRow {
  name: string;
  host: string | null;
  id?: number;
  state: string;
  memory?: number;
  maxmem?: number;
  vcpus?: number;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n');
}

export async function listPool(asJson: boolean): Promise<void> {
  const r = await api().get<{ domains: PoolDomainRow[]; errors: Array<{ host: string; message: string }> }>('/v1/pool/domains');
  for (const e of r.errors) warn(`warning: host ${e.host} did not answer: ${e.message}`);
  if (asJson) return json(r.domains);
  const rows = [['Name', 'Host', 'ID', 'Mem', 'VCPUs', 'State']];
  for (const d of r.domains) rows.push([d.name, d.host ?? '-', d.id === undefined ? '-' : String(d.id), String(d.memory ?? d.maxmem ?? '-'), d.vcpus ? String(d.vcpus) : '-', d.state]);
  out(table(rows));
}

export function registerPoolCommands(program: Command): void {
  program
    .command('host-list')
    .description('the hosts of the pool: state, free memory, cpus, accelerator, guests, lease age; and the pool CPU model')
    .option('--json', 'as JSON')
    .action(async (opts: { json?: boolean }) => {
      const r = await api().get<{ hosts: HostRow[]; cpu: PoolCpu }>('/v1/pool/hosts');
      if (opts.json) return json(r);
      const rows = [['Host', 'State', 'Address', 'Free MiB', 'CPUs', 'Accel', 'Guests', 'Lease age']];
      for (const h of r.hosts) {
        const up = h.state !== 'down';
        rows.push([h.name, h.state, h.address, up ? String(Math.floor(h.memFreeKiB / 1024)) : '-', up ? String(h.cpus) : '-', up ? h.accel : '-', String(h.guests), h.leaseAgeS === null ? 'expired' : `${h.leaseAgeS}s`]);
      }
      out(`${table(rows)}\nCPU model: ${r.cpu.model} (${r.cpu.note})`);
    });

  for (const [verb, doc] of [['disable', 'no new guests are placed on the host (its running guests stay)'], ['enable', 'guests may be placed on the host again']] as const) {
    program
      .command(`host-${verb}`)
      .description(doc)
      .argument('<host>', "the host's name in the pool")
      .action(async (host: string) => {
        await api().post(`/v1/pool/hosts/${encodeURIComponent(host)}/${verb}`, {});
      });
  }

  program
    .command('pool-eject')
    .description('remove a host from the pool (refused while it runs guests); with --dir, also delete its etcd user')
    .argument('<host>', "the host's name in the pool")
    .option('--dir <dir>', 'the pool directory (its root certificate removes the etcd user)')
    .option('--etcd <urls>', "the pool's etcd client URLs (comma separated), with --dir")
    .action(async (host: string, opts: { dir?: string; etcd?: string }) => {
      await api().request('DELETE', `/v1/pool/hosts/${encodeURIComponent(host)}`);
      if (opts.dir) {
        const { ejectUser, etcdUrls, poolMeta } = await import('../../pool/admin.js');
        await ejectUser(opts.dir, opts.etcd ? opts.etcd.split(',') : etcdUrls(poolMeta(opts.dir)), host);
      }
      out(`Host ${host} ejected from the pool`);
    });
}
