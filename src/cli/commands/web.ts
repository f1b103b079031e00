/** `xeno web-token`: the web console's login token (and where it listens). */
import type { Command } from 'commander';
import { api, json, out } from '../context.js';

export function registerWebCommands(program: Command): void {
  program
    .command('web-token')
    .description("the web console's login token (xenod --web) and its URL")
    .option('--json', 'as JSON')
    .action(async (opts: { json?: boolean }) => {
      const r = await api().get<{ token: string; url: string }>('/v1/web-token');
      if (opts.json) json(r);
      else out(`${r.token}\n${r.url}`);
    });
}
