/** Network commands: network-list, network-attach, network-detach, network-rules. */
import type { Command } from 'commander';
import { domPath } from '../../client/client.js';
import type { NetworkListResult, VifListEntry as VifRow, VifRules } from '../../model/api.js';
import { api, json, out } from '../context.js';

type NetworkList = NetworkListResult;

/**
 * xm network-list's columns where they mean something here (Idx, BE, MAC Addr., handle, state:
 * 4 = connected), then xeno's own: the backend interface, its mode, the guest address and rate.
 */
export function formatNetworkList(lists: NetworkList[]): string {
  const head = `${'Idx'.padEnd(4)}${'BE'.padEnd(4)}${'Mac Addr.'.padEnd(19)}${'handle'.padEnd(7)}${'state'.padEnd(6)}${'vif'.padEnd(16)}${'mode'.padEnd(7)}${'IP'.padEnd(22)}rate`;
  const lines = [head];
  for (const l of lists) {
    for (const v of l.vifs) {
      const ip = v.ips.length ? v.ips.join(' ') + (v.dhcp && v.mode === 'nat' ? ' (dhcp)' : '') : v.dhcp ? 'dhcp' : '-';
      lines.push(
        `${String(v.devid).padEnd(4)}${'0'.padEnd(4)}${v.mac.padEnd(19)}${String(v.devid).padEnd(7)}${'4'.padEnd(6)}${v.ifname.padEnd(16)}${v.mode.padEnd(7)}${ip.padEnd(21)} ${v.rate ?? '-'}`,
      );
    }
  }
  return lines.join('\n') + '\n';
}

export function formatRules(name: string, vifs: VifRules[]): string {
  if (!vifs.length) return `${name} has no vif\n`;
  const lines: string[] = [];
  for (const v of vifs) {
    lines.push(`# vif ${v.devid}: ${v.ifname} (${v.mode}) -- chain ${v.chain} in table ${v.family} ${v.table}`);
    lines.push(`#   add rules with: nft add rule ${v.family} ${v.table} ${v.chain} <match> <verdict>`);
    if (v.rules.length) lines.push(...v.rules.map((r) => `  ${r}`));
    else lines.push('  (no rules)');
  }
  return lines.join('\n') + '\n';
}

export function registerNetworkCommands(program: Command): void {
  program
    .command('network-list')
    .description("list a domain's virtual network interfaces and their backends")
    .argument('<doms...>', 'names or ids')
    .option('--json', 'as JSON')
    .action(async (doms: string[], opts: { json?: boolean }) => {
      const lists = await Promise.all(doms.map((d) => api().get<NetworkList>(domPath(d, '/network'))));
      if (opts.json) json(lists.length === 1 ? lists[0] : lists);
      else out(formatNetworkList(lists));
    });

  program
    .command('network-attach')
    .description("hot-plug a network interface into a running domain (xl vif spec, e.g. 'ip=10.0.0.14,rate=10Mb/s')")
    .argument('<dom>', 'name or id')
    .argument('[spec...]', 'vif settings: one comma-separated spec, or key=value words as xm takes them')
    .option('--json', 'print the new interface as JSON')
    .action(async (dom: string, spec: string[], opts: { json?: boolean }) => {
      const v = await api().post<VifRow>(domPath(dom, '/network-attach'), { spec: spec.join(',') });
      if (opts.json) {
        json(v);
        return;
      }
      const addr = v.guestNet === 'dhcp' ? 'configure it in the guest by DHCP' : v.guestNet ? `configure it in the guest as ${v.guestNet.replace(':', ' via ')}` : '';
      out(`vif ${v.devid}: ${v.ifname} ${v.mac} (${v.mode})${addr ? `; ${addr}` : ''}`);
    });

  program
    .command('network-detach')
    .description('unplug a network interface from a running domain')
    .argument('<dom>', 'name or id')
    .argument('<devid>', 'the interface index (network-list) or its MAC address')
    .option('-t, --timeout <seconds>', 'how long to wait for the guest to release it (default 30)')
    .action(async (dom: string, devid: string, opts: { timeout?: string }) => {
      const timeout = opts.timeout === undefined ? undefined : Number(opts.timeout);
      if (timeout !== undefined && !(timeout >= 0)) throw new Error(`network-detach --timeout: '${opts.timeout}' is not a number of seconds`);
      await api().post(domPath(dom, '/network-detach'), { vif: devid, timeout });
    });

  program
    .command('network-rules')
    .description("list the firewall rules of a domain's vif chains (nftables chains an admin may add rules to)")
    .argument('<dom>', 'name or id')
    .option('--json', 'as JSON')
    .action(async (dom: string, opts: { json?: boolean }) => {
      const r = await api().get<{ name: string; vifs: VifRules[] }>(domPath(dom, '/network-rules'));
      if (opts.json) json(r);
      else out(formatRules(r.name, r.vifs));
    });
}
