/** `xeno migrate DOM HOST [-l|--live] [-p|--port PORT]`, as xm migrate. */
import type { Command } from 'commander';
import { domPath } from '../../client/client.js';
import type { MigrateResult } from '../../migration/client.js';
import { api, json, out } from '../context.js';

const MiB = 1024 * 1024;

/** The summary line: live/offline, total time, downtime, MiB transferred. */
export function formatMigrateResult(r: MigrateResult): string {
  const ms = (v: number | undefined) => (v === undefined ? '?' : `${Math.round(v)} ms`);
  const total = ((r.totalTimeMs ?? r.elapsedMs) / 1000).toFixed(2);
  const down = r.live ? `downtime ${ms(r.downtimeMs)} (+${ms(r.resumeMs)} to resume there)` : r.guestDowntimeMs !== undefined ? `downtime ${ms(r.guestDowntimeMs)} (paused for the copy)` : 'it stays paused';
  const mib = r.bytes === undefined ? '?' : (r.bytes / MiB).toFixed(1);
  return `Migrated domain ${r.name} to ${r.host}:${r.port} (${r.live ? 'live' : 'offline'}, domain ${r.id} there, ${r.state}): total ${total} s, ${down}, ${mib} MiB transferred`;
}

export function registerMigrationCommands(program: Command): void {
  program
    .command('migrate')
    .description("move a domain to another host running xenod with its relocation server on; -l keeps it running during the copy")
    .argument('<dom>', 'name or id')
    .argument('<host>', 'the target host')
    .option('-l, --live', 'live migration (otherwise the domain is paused while its state is copied)')
    .option('-p, --port <port>', "the target's xend-relocation-port (default 8002)")
    .option('-f, --force', 'migrate even with read-write disks whose cache mode is unsafe on shared storage (cache= other than none/directsync)')
    .option('--json', 'print the result as JSON')
    .action(async (dom: string, host: string, opts: { live?: boolean; port?: string; json?: boolean; force?: boolean }) => {
      let port: number | undefined;
      if (opts.port !== undefined) {
        port = Number(opts.port);
        if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`migrate --port: '${opts.port}' is not a port number`);
      }
      const r = await api().post<MigrateResult>(domPath(dom, '/migrate'), { host, live: opts.live ?? false, ...(port ? { port } : {}), ...(opts.force ? { force: true } : {}) });
      if (opts.json) return json(r);
      out(formatMigrateResult(r));
    });
}
