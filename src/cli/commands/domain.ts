/** Domain lifecycle commands: create, list, shutdown, reboot, destroy, pause, unpause, domid, domname, uptime, config. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { domPath } from '../../client/client.js';
import type { CreateResponse, DomainDetail, DomainInfo } from '../../model/api.js';
import { api, json, out, warn } from '../context.js';
import { formatList, formatOffRows, formatUptimeTable } from '../format.js';
import { attachConsole } from './console.js';
import { offDomains } from './manage.js';
import { listPool } from './pool.js';

async function listDomains(doms: string[]): Promise<DomainInfo[]> {
  const { domains } = await api().get<{ domains: DomainInfo[] }>('/v1/domains');
  if (!doms.length) return domains;
  return doms.map((d) => {
    const found = domains.find((x) => x.name === d || String(x.id) === d);
    if (!found) throw new Error(`domain '${d}' does not exist`);
    return found;
  });
}

export function registerDomainCommands(program: Command): void {
  program
    .command('create')
    .description('create a domain from an xl.cfg / xm config file')
    .argument('<cfg>', 'config file')
    .argument('[overrides...]', 'key=value settings that override the file')
    .option('-c, --console', 'attach to the console after creation')
    .option('-p, --paused', 'leave the domain paused')
    .option('-n, --dry-run', 'parse and validate, print the domain config as JSON, start nothing')
    .option('--json', 'print the new domain as JSON')
    .action(async (cfg: string, overrides: string[], opts: { console?: boolean; paused?: boolean; dryRun?: boolean; json?: boolean }) => {
      const file = path.resolve(cfg);
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (e) {
        throw new Error(`cannot read config file ${cfg}: ${(e as NodeJS.ErrnoException).code ?? e}`);
      }
      warn(`Parsing config from ${cfg}`);
      const res = await api().post<CreateResponse>('/v1/domains', {
        cfgText: text, cfgFile: cfg, overrides, cwd: process.cwd(), paused: opts.paused ?? false, dryRun: opts.dryRun ?? false,
      });
      for (const w of res.warnings) warn(w);
      if (opts.dryRun) {
        json(res.config);
        return;
      }
      if (opts.json) json(res.domain);
      else out(`Started domain ${res.domain!.name} (id=${res.domain!.id})`);
      if (opts.console) {
        await attachConsole(res.domain!.name, false);
        process.exit(0); // detached: as `xeno console`, nothing of the session may keep the process alive
      }
    });

  program
    .command('list')
    .alias('li')
    .description('list domains')
    .argument('[doms...]', 'names or ids')
    .option('-l, --long', 'full state of each domain as JSON')
    .option('--json', 'one JSON object per domain')
    .option('-a, --all', 'also the defined guests that are off (state off)')
    .option('--pool', 'every guest of the pool, with its host (a pooled host)')
    .action(async (doms: string[], opts: { long?: boolean; json?: boolean; all?: boolean; pool?: boolean }) => {
      if (opts.pool) return listPool(opts.json ?? false);
      const domains = await listDomains(doms);
      const off = opts.all && !doms.length ? await offDomains() : [];
      if (opts.long) {
        const details = await Promise.all(domains.map((d) => api().get<DomainDetail>(domPath(String(d.id)))));
        json([...details, ...off]);
      } else if (opts.json) json([...domains, ...off]);
      else out(formatList(domains) + formatOffRows(off));
    });

  program
    .command('shutdown')
    .description("shut a domain down cleanly (ACPI power button); -w waits until it is gone")
    .argument('[doms...]', 'names or ids')
    .option('-w, --wait', 'wait for the domain to be gone')
    .option('-a, --all', 'all domains')
    .action(async (doms: string[], opts: { wait?: boolean; all?: boolean }) => {
      const targets = opts.all ? (await listDomains([])).filter((d) => d.id !== 0).map((d) => d.name) : doms;
      if (!targets.length) throw new Error('shutdown: name a domain, or use -a');
      await Promise.all(targets.map((d) => api().post(domPath(d, '/shutdown'), { wait: opts.wait ?? false })));
    });

  const simple: Array<[string, string]> = [
    ['reboot', 'reboot a domain cleanly'],
    ['destroy', 'terminate a domain immediately'],
    ['pause', 'pause a domain (keeps its memory, gets no CPU)'],
    ['unpause', 'unpause a paused domain'],
  ];
  for (const [name, description] of simple) {
    program
      .command(name)
      .description(description)
      .argument('<dom>', 'name or id')
      .action(async (dom: string) => {
        await api().post(domPath(dom, `/${name}`));
      });
  }

  program
    .command('domid')
    .description("a domain's id from its name")
    .argument('<name>')
    .option('--json', 'as JSON')
    .action(async (name: string, opts: { json?: boolean }) => {
      const d = await api().get<DomainInfo>(domPath(name));
      if (opts.json) json({ name: d.name, id: d.id });
      else out(String(d.id));
    });

  program
    .command('domname')
    .description("a domain's name from its id")
    .argument('<id>')
    .option('--json', 'as JSON')
    .action(async (id: string, opts: { json?: boolean }) => {
      if (!/^\d+$/.test(id)) throw new Error(`domname: '${id}' is not a domain id`);
      const d = await api().get<DomainInfo>(domPath(id));
      if (opts.json) json({ name: d.name, id: d.id });
      else out(d.name);
    });

  program
    .command('uptime')
    .description('uptime of domains')
    .argument('[doms...]')
    .option('--json', 'as JSON')
    .action(async (doms: string[], opts: { json?: boolean }) => {
      const domains = await listDomains(doms);
      if (opts.json) json(domains.map((d) => ({ name: d.name, id: d.id, uptime: d.uptime })));
      else out(formatUptimeTable(domains));
    });

  program
    .command('config')
    .description("print a domain's current config in xl.cfg syntax")
    .argument('<dom>')
    .option('--json', 'as JSON')
    .action(async (dom: string, opts: { json?: boolean }) => {
      const r = await api().get<{ config: unknown; xlcfg: string }>(domPath(dom, '/config'));
      if (opts.json) json(r.config);
      else out(r.xlcfg);
    });
}
