/** `xeno migrate DOM HOST [-l|--live] [-p|--port PORT]`, as xm migrate, with the stream's tuning (--postcopy, --parallel, auto-converge, max downtime). */
import type { Command } from 'commander';
import { domPath } from '../../client/client.js';
import type { MigrateProgress, MigrateResult } from '../../migration/client.js';
import { api, json, out } from '../context.js';
import { MigrateProgressView } from './migrate-progress.js';
import { postWithProgress } from './save-restore.js';

const MiB = 1024 * 1024;

/** The summary line: live/offline, total time, downtime, MiB transferred. */
export function formatMigrateResult(r: MigrateResult): string {
  const ms = (v: number | undefined) => (v === undefined ? '?' : `${Math.round(v)} ms`);
  const total = ((r.totalTimeMs ?? r.elapsedMs) / 1000).toFixed(2);
  const down = r.live ? `downtime ${ms(r.downtimeMs)} (+${ms(r.resumeMs)} to resume there)` : r.guestDowntimeMs !== undefined ? `downtime ${ms(r.guestDowntimeMs)} (paused for the copy)` : 'it stays paused';
  const mib = r.bytes === undefined ? '?' : (r.bytes / MiB).toFixed(1);
  const how = [r.postcopy ? `postcopy: the guest stopped ${ms(r.guestDowntimeMs)}` : '', (r.parallel ?? 1) > 1 ? `${r.parallel} channels` : '', r.throttlePercent ? `vcpus throttled to ${100 - r.throttlePercent} %` : ''].filter(Boolean);
  return `Migrated domain ${r.name} to ${r.host}:${r.port} (${r.live ? 'live' : r.pausedWhy ? `offline, asked live: ${r.pausedWhy}` : 'offline'}, domain ${r.id} there, ${r.state}): total ${total} s, ${down}, ${mib} MiB transferred${how.length ? `; ${how.join(', ')}` : ''}`;
}

export function registerMigrationCommands(program: Command): void {
  program
    .command('migrate')
    .description("move a domain to another host running xenod with its relocation server on; -l keeps it running during the copy")
    .argument('<dom>', 'name or id')
    .argument('<host>', 'the target host')
    .option('-l, --live', 'live migration (otherwise the domain is paused while its state is copied)')
    .option('-p, --port <port>', "the target's xend-relocation-port (default 8002)")
    .option('--copy-storage', 'no shared storage: copy every writable disk to the target (it creates them; read-only disks and backing files must be there already)')
    .option('-f, --force', 'migrate even with read-write disks whose cache mode is unsafe on shared storage (cache= other than none/directsync)')
    .option('--postcopy', 'with -l: if the first full copy of the RAM does not converge, switch to postcopy (the guest runs on the target while the rest of its RAM follows; a link lost after the switch loses the guest)')
    .option('--parallel <n>', 'multifd: carry the RAM over N TLS channels (1-16; not with --postcopy; without auto-converge)')
    .option('--no-auto-converge', 'do not throttle the vcpus of a guest that dirties RAM faster than the link (on by default for -l without --postcopy or --parallel)')
    .option('--max-downtime <ms>', 'the longest final stop-and-copy a precopy may end with (default 300 ms)')
    .option('--json', 'print the result as JSON')
    .action(async (dom: string, host: string, opts: { live?: boolean; port?: string; json?: boolean; force?: boolean; copyStorage?: boolean; postcopy?: boolean; parallel?: string; autoConverge?: boolean; maxDowntime?: string }) => {
      const int = (v: string | undefined, what: string, min: number, max: number): number | undefined => {
        if (v === undefined) return undefined;
        const n = Number(v);
        if (!Number.isInteger(n) || n < min || n > max) throw new Error(`migrate ${what}: '${v}' is not an integer from ${min} to ${max}`);
        return n;
      };
      const port = int(opts.port, '--port', 1, 65535);
      const parallel = int(opts.parallel, '--parallel', 1, 16);
      const maxDowntimeMs = int(opts.maxDowntime, '--max-downtime', 1, 60000);
      const body = {
        host, live: opts.live ?? false, ...(opts.copyStorage ? { copyStorage: true } : {}), ...(port ? { port } : {}), ...(opts.force ? { force: true } : {}),
        ...(opts.postcopy ? { postcopy: true } : {}), ...(parallel ? { parallel } : {}), ...(opts.autoConverge === false ? { autoConverge: false } : {}), ...(maxDowntimeMs ? { maxDowntimeMs } : {}),
      };
      // progress on a terminal (bars), or the mirror's start and end on stderr for a --copy-storage
      const tty = !opts.json && process.stderr.isTTY === true;
      let r: MigrateResult;
      if (tty || (opts.copyStorage && !opts.json)) {
        const view = new MigrateProgressView(dom, tty);
        try {
          r = await postWithProgress<MigrateResult, MigrateProgress>(domPath(dom, '/migrate'), body, (p) => view.update(p));
        } finally {
          await view.stop();
        }
      } else r = await api().post<MigrateResult>(domPath(dom, '/migrate'), body);
      if (opts.json) return json(r);
      out(formatMigrateResult(r));
    });
}
