/** xeno host-evacuate HOST: every guest of HOST live-migrated to the other hosts of the pool. */
import type { Command } from 'commander';
import { api, json, out, warn } from '../context.js';

interface Result {
  moved: Array<{ name: string; to: string; seconds: number }>;
  stuck: Array<{ name: string; why: string }>;
}

export function registerEvacuateCommands(program: Command): void {
  program
    .command('host-evacuate')
    .argument('<host>', 'the host to empty (e.g. before maintenance; host-disable it first so nothing new lands there)')
    .description('live-migrate every guest of a host to the other hosts by placement, in parallel; lists any that cannot move and why')
    .option('--parallel <n>', 'migrations at a time (1-8)', '2')
    .option('--json', 'as JSON')
    .action(async (host: string, opts: { parallel: string; json?: boolean }) => {
      const parallel = Number(opts.parallel);
      const r = await api().post<Result>(`/v1/pool/hosts/${encodeURIComponent(host)}/evacuate`, { parallel });
      if (opts.json) return json(r);
      for (const m of r.moved) out(`${m.name}: moved to ${m.to} (${m.seconds} s)`);
      for (const s of r.stuck) warn(`${s.name}: not moved: ${s.why}`);
      if (r.stuck.length) process.exitCode = 1;
      if (!r.moved.length && !r.stuck.length) out(`${host} runs no guest`);
    });
}
