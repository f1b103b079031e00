/**
 * `xeno top`: xentop. Full screen (plain ANSI) refreshed every -d seconds, or `-b` batch lines in
 * xentop's exact layout, or `--json` (one object per domain per sample). Each refresh is ONE
 * request for the daemon's latest samples: the daemon samples continuously, so the first screen
 * already has a real CPU %.
 */
import os from 'node:os';
import type { Command } from 'commander';
import { XENO_VERSION } from '../../common/version.js';
import type { StatsResponse } from '../../model/stats.js';
import { api, out } from '../context.js';
import { FIELDS, SORTABLE, fieldWidths, header, netLines, row, sortRows, summary, vbdLines, type TopRow } from '../top-format.js';

interface TopOpts {
  batch?: boolean;
  iterations?: string;
  delay: string;
  json?: boolean;
  networks?: boolean;
  vbds?: boolean;
}

interface Frame {
  rows: TopRow[];
  stats: StatsResponse;
}

/**
 * The newest sample of every domain, in one request. As xentop's, CPU(%) is the use over the last
 * `delay` seconds (from the daemon's history, so the first screen has it too), not one second's.
 */
async function fetchFrame(delay: number, averaged = true): Promise<Frame> {
  const stats = await api().get<StatsResponse>(`/v1/stats?since=-${Math.ceil(delay) + 2}`);
  const rows: TopRow[] = [];
  for (const d of stats.domains) {
    const last = d.samples[d.samples.length - 1];
    if (!last) continue;
    const from = d.samples.find((x) => x.t >= last.t - delay - 0.01);
    const span = from ? last.t - from.t : 0;
    const cpuPct = averaged && from && span > 0 ? Math.max(0, ((last.cpuSec - from.cpuSec) / span) * 100) : last.cpuPct;
    rows.push({ id: d.id, name: d.name, s: { ...last, cpuPct } });
  }
  return { rows, stats };
}

function table(f: Frame, sortField: number, opts: { networks: boolean; vbds: boolean }): string[] {
  const rows = sortRows(f.rows, sortField);
  const host = f.stats.host.samples[f.stats.host.samples.length - 1];
  const totalMem = host?.totalMem ?? 1;
  const widths = fieldWidths(rows);
  const lines = [header(widths)];
  for (const r of rows) {
    lines.push(row(r, widths, totalMem));
    if (opts.networks) lines.push(...netLines(r.s));
    if (opts.vbds) lines.push(...vbdLines(r.s));
  }
  return lines;
}

function parseDelay(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`-d wants a positive number of seconds, not '${v}'`);
  return n;
}

const sleep = (s: number) => new Promise((r) => setTimeout(r, s * 1000));

async function batch(opts: TopOpts, delay: number): Promise<void> {
  const iterations = opts.iterations === undefined ? Infinity : Number(opts.iterations);
  if (!(iterations > 0)) throw new Error(`-i wants a positive count, not '${opts.iterations}'`);
  let stop = false;
  process.once('SIGINT', () => (stop = true));
  process.once('SIGTERM', () => (stop = true));
  for (let i = 0; i < iterations && !stop; i++) {
    if (i > 0) await sleep(delay);
    const f = await fetchFrame(delay, !opts.json);
    if (opts.json) {
      for (const r of sortRows(f.rows, 0)) out(JSON.stringify({ id: r.id, name: r.name, ...r.s }));
    } else {
      process.stdout.write(table(f, 0, { networks: !!opts.networks, vbds: !!opts.vbds }).join('\n') + '\n');
    }
  }
}

async function interactive(delay: number, opts: TopOpts): Promise<void> {
  const stdin = process.stdin;
  const tty = stdin.isTTY;
  let sortField = 0;
  let networks = !!opts.networks;
  let vbds = !!opts.vbds;
  let prompt: string | null = null;
  let wake: (() => void) | undefined;
  let quit = false;
  const cpus = { n: os.cpus().length, mhz: os.cpus()[0]?.speed ?? 0 };
  const onKey = (buf: Buffer) => {
    for (const ch of buf.toString('utf8')) {
      if (prompt !== null) {
        if (ch === '\r' || ch === '\n') {
          const n = Number(prompt);
          if (n > 0) delay = n;
          prompt = null;
        } else if (ch === '\x1b') prompt = null;
        else if (ch === '\x7f') prompt = prompt.slice(0, -1);
        else if (/[0-9.]/.test(ch)) prompt += ch;
      } else if (ch === 'q' || ch === 'Q' || ch === '\x1b' || ch === '\x03') quit = true;
      else if (ch === 's' || ch === 'S') sortField = SORTABLE[(SORTABLE.indexOf(sortField) + 1) % SORTABLE.length]!;
      else if (ch === 'n' || ch === 'N') networks = !networks;
      else if (ch === 'b' || ch === 'B') vbds = !vbds;
      else if (ch === 'd' || ch === 'D') prompt = '';
    }
    wake?.();
  };
  if (tty) stdin.setRawMode(true);
  stdin.on('data', onKey);
  stdin.resume();
  const restore = () => {
    process.stdout.write('\x1b[?25h\x1b[?1049l');
    if (tty) stdin.setRawMode(false);
    stdin.off('data', onKey);
    stdin.pause();
  };
  process.stdout.write('\x1b[?1049h\x1b[?25l'); // alternate screen, cursor hidden
  try {
    let frame = await fetchFrame(delay);
    let fetchedAt = Date.now();
    while (!quit) {
      const host = frame.stats.host.samples[frame.stats.host.samples.length - 1];
      const lines = host ? summary(frame.rows, host, XENO_VERSION, cpus, new Date()) : [];
      lines.push(...table(frame, sortField, { networks, vbds }));
      const height = process.stdout.rows || 24;
      const shown = lines.slice(0, height - 1);
      const bottom = prompt !== null ? `  Delay(sec): ${prompt}` : `  Delay ${delay}s  Networks  vBds  Sort: ${FIELDS[sortField]!.header}  Quit`;
      process.stdout.write('\x1b[H\x1b[2J' + shown.join('\n') + `\n\x1b[${height};1H\x1b[7m${bottom}\x1b[0m`);
      // wait for the delay or a key, then fetch again only when the delay has passed
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.max(0, delay * 1000 - (Date.now() - fetchedAt)));
        wake = () => {
          clearTimeout(t);
          r();
        };
      });
      wake = undefined;
      if (Date.now() - fetchedAt >= delay * 1000) {
        frame = await fetchFrame(delay);
        fetchedAt = Date.now();
      }
    }
  } finally {
    restore();
  }
}

export function registerTopCommands(program: Command): void {
  program
    .command('top')
    .description('the domains and their use of CPU, memory, network and disk, refreshed (xentop)')
    .option('-b, --batch', 'batch mode: print xentop lines and no screen control')
    .option('-i, --iterations <n>', 'number of refreshes before exiting')
    .option('-d, --delay <seconds>', 'seconds between refreshes', '3')
    .option('-n, --networks', 'a line per vif')
    .option('-x, --vbds', 'a line per disk')
    .option('--json', 'one JSON object per domain per sample (implies -b)')
    .action(async (opts: TopOpts) => {
      const delay = parseDelay(opts.delay);
      if (opts.batch || opts.json || !process.stdout.isTTY) await batch(opts, delay);
      else await interactive(delay, opts);
    });
}
