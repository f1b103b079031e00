/** Host commands: info, log, dmesg. */
import type { Command } from 'commander';
import type { HostInfo } from '../../model/api.js';
import { api, json, out } from '../context.js';
import { formatInfo } from '../format.js';

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
    .action(async (opts: { lines: string }) => {
      const r = await api().get<{ lines: string[] }>(`/v1/log?lines=${Number(opts.lines) || 200}`);
      if (r.lines.length) out(r.lines.join('\n'));
    });

  program
    .command('dmesg')
    .description('domain lifecycle events recorded by the daemon')
    .option('-n, --lines <n>', 'number of events', '200')
    .action(async (opts: { lines: string }) => {
      const r = await api().get<{ events: EventRow[] }>(`/v1/events?limit=${Number(opts.lines) || 200}`);
      for (const e of r.events) out(`[${new Date(e.ts * 1000).toISOString()}] ${e.name ?? 'xenod'}${e.domid !== null ? `(${e.domid})` : ''} ${e.kind}: ${e.message}`);
    });
}
