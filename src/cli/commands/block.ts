/** Block devices and images: block-list, block-attach, block-detach, cd-insert, cd-eject, image-create, image-info. */
import path from 'node:path';
import type { Command } from 'commander';
import { domPath } from '../../client/client.js';
import type { BlockRow } from '../../toolstack/block.js';
import type { ImageInfo } from '../../toolstack/images.js';
import { api, json, out } from '../context.js';

const num = (n: number | null): string => (n === null ? '-' : String(n));

function human(bytes: number | null): string {
  if (bytes === null) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(1)}${units[u]}`;
}

/** The block-list table: one line per vdev. */
export function formatBlockList(rows: BlockRow[]): string {
  const head = ['Vdev', 'Type', 'Format', 'Access', 'Cache', 'Size', 'RdBytes', 'RdReqs', 'WrBytes', 'WrReqs', 'Backend'];
  const lines = rows.map((r) => [
    r.vdev, r.devtype, r.format, r.access, r.cache ?? '-', human(r.sizeBytes), num(r.rdBytes), num(r.rdReqs), num(r.wrBytes), num(r.wrReqs),
    r.devtype === 'cdrom' && !r.target ? '(empty)' : r.target,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  return [head, ...lines].map((l) => l.map((c, i) => (i === l.length - 1 ? c : c.padEnd(widths[i]!))).join(' ')).join('\n') + '\n';
}

export function formatImageInfo(i: ImageInfo): string {
  const lines = [`image: ${i.filename}`, `format: ${i.format}`, `virtual size: ${human(i.virtualSize)} (${i.virtualSize} bytes)`, `disk size: ${human(i.actualSize)}`];
  if (i.chain.length > 1) {
    lines.push('backing chain:');
    for (const l of i.chain.slice(1)) lines.push(`  ${l.filename} (${l.format}, ${human(l.virtualSize)})`);
  }
  return lines.join('\n') + '\n';
}

const abs = (p: string): string => path.resolve(p);

export function registerBlockCommands(program: Command): void {
  program
    .command('block-list')
    .description("list a domain's virtual block devices: backend, format, access, size, I/O counters")
    .argument('<dom>', 'name or id')
    .option('--json', 'as JSON')
    .action(async (dom: string, opts: { json?: boolean }) => {
      const { disks } = await api().get<{ disks: BlockRow[] }>(domPath(dom, '/block'));
      if (opts.json) json(disks);
      else out(formatBlockList(disks));
    });

  program
    .command('block-attach')
    .description("hot-plug a disk into a running domain (kept in its config): xm's 'file:/srv/d.img,xvdb,w' or xl's positional/keyword spec")
    .argument('<dom>', 'name or id')
    .argument('<spec...>', "disk spec, e.g. file:/srv/data.img,xvdb,w  or  format=qcow2,vdev=xvdb,target=/srv/d.qcow2 (xm's 'mode' may be a separate word)")
    .action(async (dom: string, words: string[]) => {
      // xm block-attach DOM BACKEND VDEV MODE: separate words join into the legacy spec.
      await api().post<BlockRow>(domPath(dom, '/block'), { spec: words.join(',') });
    });

  program
    .command('block-detach')
    .description('unplug a disk from a running domain once the guest releases it')
    .argument('<dom>', 'name or id')
    .argument('<vdev>', 'guest device name, e.g. xvdb')
    .option('-t, --timeout <seconds>', 'how long to wait for the guest (default 30)')
    .action(async (dom: string, vdev: string, opts: { timeout?: string }) => {
      const q = opts.timeout === undefined ? '' : `?timeout=${encodeURIComponent(opts.timeout)}`;
      await api().request('DELETE', `${domPath(dom, `/block/${encodeURIComponent(vdev)}`)}${q}`);
    });

  program
    .command('cd-insert')
    .description("insert a medium into a domain's cdrom drive")
    .argument('<dom>', 'name or id')
    .argument('<vdev>', 'the cdrom drive, e.g. hdc')
    .argument('<path>', 'image file (a format prefix like raw: is allowed)')
    .action(async (dom: string, vdev: string, p: string) => {
      const m = /^([a-z0-9]+:)(.*)$/.exec(p);
      const target = m ? `${m[1]}${abs(m[2]!)}` : abs(p);
      await api().post<BlockRow>(domPath(dom, `/block/${encodeURIComponent(vdev)}/insert`), { target });
    });

  program
    .command('cd-eject')
    .description("eject the medium of a domain's cdrom drive (the drive stays, empty)")
    .argument('<dom>', 'name or id')
    .argument('<vdev>', 'the cdrom drive, e.g. hdc')
    .action(async (dom: string, vdev: string) => {
      await api().post<BlockRow>(domPath(dom, `/block/${encodeURIComponent(vdev)}/eject`), {});
    });

  program
    .command('image-create')
    .description('create a disk image (qemu-img); with --backing a thin qcow2 clone of a base image')
    .argument('<path>', 'the new image (never overwrites a file)')
    .argument('[size]', 'MiB, or a size with b/k/m/g/t (a clone inherits its base size)')
    .option('--format <format>', 'qcow2 or raw', 'qcow2')
    .option('--backing <base>', 'base image of a thin clone (its format is recorded in the clone)')
    .option('--json', 'print the new image as JSON')
    .action(async (p: string, size: string | undefined, opts: { format: string; backing?: string; json?: boolean }) => {
      const info = await api().post<ImageInfo>('/v1/images', { path: abs(p), size, format: opts.format, backing: opts.backing === undefined ? undefined : abs(opts.backing) });
      if (opts.json) json(info);
    });

  program
    .command('image-info')
    .description('show a disk image: format, virtual and real size, backing chain (probed safely)')
    .argument('<path>', 'image file')
    .option('--json', 'as JSON')
    .action(async (p: string, opts: { json?: boolean }) => {
      const info = await api().get<ImageInfo>(`/v1/images?path=${encodeURIComponent(abs(p))}`);
      if (opts.json) json(info);
      else out(formatImageInfo(info));
    });
}
