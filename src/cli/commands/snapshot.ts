/** `xeno snapshot-create | snapshot-list | snapshot-revert | snapshot-delete`: external qcow2 snapshots. */
import type { Command } from 'commander';
import { domPath } from '../../client/client.js';
import type { SnapshotInfo } from '../../toolstack/snapshots.js';
import { api, json, out } from '../context.js';

const snapPath = (dom: string, snap: string, suffix = '') => domPath(dom, `/snapshots/${encodeURIComponent(snap)}${suffix}`);

/** The tree: one line per snapshot, indented under its parent, the current one marked. */
export function formatSnapshotTree(list: SnapshotInfo[]): string {
  if (list.length === 0) return 'no snapshots';
  const rows = list.map((s) => {
    const when = new Date(s.created * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
    const what = s.memory ? 'disks+memory' : 'disks only';
    return `${'  '.repeat(s.depth)}${s.depth ? '└─ ' : ''}${s.name}${s.current ? ' *' : ''}  ${when}  ${what}${s.quiesced ? ', quiesced' : ''}  (${s.vmState})`;
  });
  return ['Snapshots (* = the present state grew from it):', ...rows].join('\n');
}

export function registerSnapshotCommands(program: Command): void {
  program
    .command('snapshot-create')
    .description('take a snapshot of a running or defined guest: an external qcow2 overlay on every writable disk, taken atomically')
    .argument('<dom>', 'name or id')
    .argument('<name>', 'snapshot name')
    .option('--memory', 'save RAM and device state too (running guest): a revert resumes it where it was')
    .option('--quiesce', "freeze the guest's filesystems through its guest agent during the snapshot (fails if no agent answers)")
    .option('--json', 'print the result as JSON')
    .action(async (dom: string, name: string, opts: { memory?: boolean; quiesce?: boolean; json?: boolean }) => {
      const r = await api().post<SnapshotInfo>(domPath(dom, '/snapshots'), { name, memory: opts.memory ?? false, quiesce: opts.quiesce ?? false });
      if (opts.json) return json(r);
      out(`Snapshot ${r.name} of ${dom} taken (${r.memory ? 'disks and memory' : 'disks only'}${r.quiesced ? ', quiesced' : ''}, ${r.disks.length} disk${r.disks.length === 1 ? '' : 's'})`);
    });
  program
    .command('snapshot-list')
    .description("show a guest's snapshot tree: parents, times, with or without memory, the current one")
    .argument('<dom>', 'name or id')
    .option('--json', 'print the list as JSON')
    .action(async (dom: string, opts: { json?: boolean }) => {
      const list = await api().get<SnapshotInfo[]>(domPath(dom, '/snapshots'));
      if (opts.json) return json(list);
      out(formatSnapshotTree(list));
    });
  program
    .command('snapshot-revert')
    .description('revert a guest to a snapshot: its present disk state is discarded; a snapshot with memory resumes the guest where it was')
    .argument('<dom>', 'name or id')
    .argument('<name>', 'snapshot name')
    .option('--json', 'print the result as JSON')
    .action(async (dom: string, name: string, opts: { json?: boolean }) => {
      const r = await api().request<{ name: string; snapshot: string; id?: number; state: string }>('POST', snapPath(dom, name, '/revert'), {});
      if (opts.json) return json(r);
      out(`Reverted ${r.name} to snapshot ${r.snapshot} (${r.state}${r.id !== undefined ? `, domain ${r.id}` : ''})`);
    });
  program
    .command('snapshot-delete')
    .description('delete a snapshot, merging its overlay into the image below (while the guest runs)')
    .argument('<dom>', 'name or id')
    .argument('<name>', 'snapshot name')
    .option('--json', 'print the result as JSON')
    .action(async (dom: string, name: string, opts: { json?: boolean }) => {
      const r = await api().request<{ name: string; snapshot: string; merged: string[] }>('DELETE', snapPath(dom, name));
      if (opts.json) return json(r);
      out(`Deleted snapshot ${r.snapshot} of ${r.name}${r.merged.length ? `: ${r.merged.join('; ')}` : ''}`);
    });
}
