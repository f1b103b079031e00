/**
 * Managed guests and the host's own life (xm new / start / delete, xendomains): new, start,
 * delete, host-stop. `list --all` (in domain.ts) shows the defined guests that are off.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import type { DomainInfo } from '../../model/api.js';
import type { DomainDefinition, OffDomainInfo } from '../../model/definition.js';
import { api, json, out, warn } from '../context.js';

export async function offDomains(): Promise<OffDomainInfo[]> {
  return (await api().get<{ off: OffDomainInfo[] }>('/v1/definitions')).off;
}

interface HostStopAnswer {
  mode: string;
  timeout: number;
  results: Array<{ name: string; ok: boolean; action: string; message: string }>;
}

function int(v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new Error(`${what} must be a whole number of seconds or a position (got '${v}')`);
  return Number(v);
}

export function registerManageCommands(program: Command): void {
  program
    .command('new')
    .description('define a guest without starting it (from a config file, or keep a running guest by NAME)')
    .argument('<cfg|name>', 'config file, or the name of a guest started with create')
    .argument('[overrides...]', 'key=value settings that override the file')
    .option('--autostart', 'start it when xenod starts after a boot (as autostart = 1)')
    .option('--json', 'print the definition as JSON')
    .action(async (arg: string, overrides: string[], opts: { autostart?: boolean; json?: boolean }) => {
      const body: Record<string, unknown> = {};
      if (opts.autostart) body.autostart = true;
      if (existsSync(arg) || arg.includes('/') || arg.endsWith('.cfg')) {
        let text: string;
        try {
          text = readFileSync(path.resolve(arg), 'utf8');
        } catch (e) {
          throw new Error(`cannot read config file ${arg}: ${(e as NodeJS.ErrnoException).code ?? e}`);
        }
        Object.assign(body, { cfgText: text, cfgFile: arg, overrides, cwd: process.cwd() });
      } else {
        if (overrides.length) throw new Error('new NAME keeps a running guest as it is: overrides need a config file');
        body.fromDomain = arg;
      }
      const r = await api().post<{ definition: DomainDefinition; warnings: string[] }>('/v1/definitions', body);
      for (const w of r.warnings) warn(w);
      if (opts.json) return json(r.definition);
      out(`Defined domain ${r.definition.name}${r.definition.autostart ? ` (autostart, order ${r.definition.autostartOrder})` : ''}`);
    });

  program
    .command('start')
    .description('start a defined guest')
    .argument('<name>', 'a name given to xeno new')
    .option('-p, --paused', 'leave it paused')
    .option('--on <host>', 'in a pool: start it on this host (default: placed by free memory and anti_affinity)')
    .option('--json', 'print the new domain as JSON')
    .action(async (name: string, opts: { paused?: boolean; on?: string; json?: boolean }) => {
      const on = opts.on ? `?on=${encodeURIComponent(opts.on)}` : '';
      const r = await api().post<{ domain: DomainInfo; host?: string }>(`/v1/definitions/${encodeURIComponent(name)}/start${on}`, { paused: opts.paused ?? false });
      if (opts.json) return json(r.host ? { ...r.domain, host: r.host } : r.domain);
      out(`Started domain ${r.domain.name} (id=${r.domain.id})${r.host ? ` on ${r.host}` : ''}`);
    });

  program
    .command('delete')
    .description("forget a defined guest (refused while it runs; its disks are kept)")
    .argument('<name>')
    .action(async (name: string) => {
      await api().request('DELETE', `/v1/definitions/${encodeURIComponent(name)}`);
    });

  program
    .command('host-stop')
    .description('the host is shutting down: save, shut down or leave every guest (xendomains.service runs this)')
    .option('-m, --mode <mode>', 'save | shutdown | leave (default: xeno-on-host-stop of xenod, save)')
    .option('-t, --timeout <seconds>', 'how long to wait for the guests (default: xeno-host-stop-timeout, 300)')
    .option('--json', 'print the results as JSON')
    .action(async (opts: { mode?: string; timeout?: string; json?: boolean }) => {
      const body: Record<string, unknown> = {};
      if (opts.mode) body.mode = opts.mode;
      const timeout = int(opts.timeout, '--timeout');
      if (timeout !== undefined) body.timeout = timeout;
      const r = await api().request<HostStopAnswer>('POST', '/v1/host/stop', body);
      if (opts.json) json(r);
      else for (const x of r.results) out(`${x.name}: ${x.action}: ${x.message}`);
      if (r.results.some((x) => !x.ok)) process.exitCode = 1;
    });
}
