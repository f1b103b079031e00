/** Host commands: info, log, dmesg. */
import type { Command } from 'commander';
import type { HostInfo } from '../../model/api.js';
import { api, json, out } from '../context.js';
import { formatInfo } from '../format.js';
import { followLog } from './log-follow.js';

interface EventRow {
  ts: number;
  domid: number | null;
  name: string | null;
  kind: string;
  message: string;
}

export function registerHostCommands(program: Command): void {
  program
    .command('info')
    .description('information about the host')
    .option('--json', 'as JSON')
    .action(async (opts: { json?: boolean }) => {
      const h = await api().get<HostInfo>('/v1/host');
      if (opts.json) json(h);
      else out(formatInfo(h));
    });

  program
    .command('log')
    .description("the daemon's log")
    .option('-n, --lines <n>', 'number of lines', '200')
    .option('-f, --follow', 'keep printing lines as xenod writes them (Ctrl-C stops)')
    .option('--json', 'as JSON (with -f: one JSON object per line)')
    .action(async (opts: { lines: string; follow?: boolean; json?: boolean }) => {
      if (opts.follow) return followLog(Number(opts.lines) || 20, opts.json ?? false);
      const r = await api().get<{ lines: string[] }>(`/v1/log?lines=${Number(opts.lines) || 200}`);
      if (opts.json) json(r.lines);
      else if (r.lines.length) out(r.lines.join('\n'));
    });

  program
    .command('dmesg')
    .description('domain lifecycle events recorded by the daemon')
    .option('-n, --lines <n>', 'number of events', '200')
    .option('--json', 'as JSON')
    .action(async (opts: { lines: string; json?: boolean }) => {
      const r = await api().get<{ events: EventRow[] }>(`/v1/events?limit=${Number(opts.lines) || 200}`);
      if (opts.json) return json(r.events);
      for (const e of r.events) out(`[${new Date(e.ts * 1000).toISOString()}] ${e.name ?? 'xenod'}${e.domid !== null ? `(${e.domid})` : ''} ${e.kind}: ${e.message}`);
    });
}
