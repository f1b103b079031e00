/**
 * `xeno save DOM FILE [-c]` and `xeno restore FILE [-p]`. On a terminal a progress bar follows the
 * operation (bytes done / total, rate, ETA) from xenod's NDJSON progress stream; with --json or
 * when stderr is not a terminal the output stays plain: one summary line, or the result as JSON.
 */
import path from 'node:path';
import cliProgress, { type SingleBar } from 'cli-progress';
import type { Command } from 'commander';
import { ApiError, domPath } from '../../client/client.js';
import type { RestoreResult, SaveResult } from '../../toolstack/save-restore.js';
import { api, json, out } from '../context.js';

interface Progress {
  bytes: number;
  done: number;
  total: number;
}

type StreamEvent<T, P> = ({ event: 'progress' } & P) | { event: 'result'; result: T } | { event: 'error'; error: { code: string; message: string } };

const MiB = 1024 * 1024;

/** POST with `progress: true` and follow the NDJSON answer; resolves with the result line. */
export async function postWithProgress<T, P = Progress>(urlPath: string, body: Record<string, unknown>, onProgress: (p: P) => void): Promise<T> {
  let outcome: { ok: true; result: T } | { ok: false; error: ApiError } | undefined;
  const res = await api().requestLines('POST', urlPath, { ...body, progress: true }, (line) => {
    if (!line.trim() || outcome) return;
    let ev: StreamEvent<T, P>;
    try {
      ev = JSON.parse(line) as StreamEvent<T, P>;
    } catch {
      return;
    }
    if (ev.event === 'progress') onProgress(ev);
    else if (ev.event === 'result') outcome = { ok: true, result: ev.result };
    else if (ev.event === 'error') outcome = { ok: false, error: new ApiError(500, ev.error.code, ev.error.message) };
  });
  if (res.status !== 200 || !res.contentType.includes('ndjson')) {
    try {
      const e = (JSON.parse(res.text) as { error: { code: string; message: string } }).error;
      throw new ApiError(res.status, e.code, e.message);
    } catch (e) {
      if (e instanceof ApiError) throw e;
      throw new ApiError(res.status, `HTTP_${res.status}`, res.text || `xenod answered ${res.status}`);
    }
  }
  if (!outcome) throw new Error('xenod closed the connection before the operation finished (see `xeno list` and its log)');
  if (!outcome.ok) throw outcome.error;
  return outcome.result;
}

/** A terminal progress bar in MiB with rate and ETA (cli-progress: the bundle loads it only when shown). */
export class ProgressView {
  private started = false;
  private readonly t0 = Date.now();

  private constructor(private readonly bar: SingleBar) {}

  static async create(label: string): Promise<ProgressView> {
    return new ProgressView(
      new cliProgress.SingleBar(
        {
          stream: process.stderr,
          format: `${label} |{bar}| {percentage}% | {value}/{total} MiB | {rate} MiB/s | ETA {eta_formatted}{extra}`,
          hideCursor: true,
          clearOnComplete: false,
          etaBuffer: 20,
          fps: 10,
        },
        cliProgress.Presets.shades_classic,
      ),
    );
  }

  update(p: Pick<Progress, 'done' | 'total'>, extra = ''): void {
    const total = Math.max(1, Math.round(p.total / MiB));
    const value = Math.min(total, Math.round(p.done / MiB));
    const secs = Math.max(0.001, (Date.now() - this.t0) / 1000);
    const payload = { rate: (p.done / MiB / secs).toFixed(0), extra };
    if (!this.started) {
      this.bar.start(total, value, payload);
      this.started = true;
    } else {
      this.bar.setTotal(total);
      this.bar.update(value, payload);
    }
  }

  stop(): void {
    if (this.started) this.bar.stop();
  }
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(2)} s`;
}

export function registerSaveRestoreCommands(program: Command): void {
  program
    .command('save')
    .description("save a domain's whole state to a file and free its resources; -c keeps it running")
    .argument('<dom>', 'name or id')
    .argument('<file>', 'the save file to write')
    .option('-c, --checkpoint', 'leave the domain running after the save (a checkpoint)')
    .option('--freeze', "freeze the guest's file systems through its agent (qemu-guest-agent) for the save")
    .option('--json', 'print the result as JSON, no progress bar')
    .action(async (dom: string, file: string, opts: { checkpoint?: boolean; freeze?: boolean; json?: boolean }) => {
      const body = { file: path.resolve(file), checkpoint: opts.checkpoint ?? false, ...(opts.freeze ? { freeze: true } : {}) };
      const tty = !opts.json && process.stderr.isTTY === true;
      let r: SaveResult;
      if (tty) {
        const view = await ProgressView.create(`Saving ${dom}`);
        try {
          r = await postWithProgress<SaveResult>(domPath(dom, '/save'), body, (p) => view.update(p, ` | written ${(p.bytes / MiB).toFixed(1)} MiB`));
        } finally {
          view.stop();
        }
      } else r = await api().post<SaveResult>(domPath(dom, '/save'), body);
      if (opts.json) return json(r);
      out(
        `Saved domain ${r.name} to ${r.file}: ${(r.size / MiB).toFixed(1)} MiB in ${seconds(r.elapsedMs)}` +
          (r.checkpoint ? ` (checkpoint: it keeps ${r.state === 'running' ? 'running' : 'paused'})` : ''),
      );
    });

  program
    .command('restore')
    .description('recreate a domain from a save file (new domain id) and resume it; -p leaves it paused')
    .argument('<file>', 'a file written by xeno save')
    .option('-p, --paused', 'leave the domain paused')
    .option('--json', 'print the result as JSON, no progress bar')
    .action(async (file: string, opts: { paused?: boolean; json?: boolean }) => {
      const body = { file: path.resolve(file), paused: opts.paused ?? false };
      const tty = !opts.json && process.stderr.isTTY === true;
      let r: RestoreResult;
      if (tty) {
        const view = await ProgressView.create(`Restoring ${path.basename(file)}`);
        try {
          r = await postWithProgress<RestoreResult>('/v1/restore', body, (p) => view.update(p));
        } finally {
          view.stop();
        }
      } else r = await api().post<RestoreResult>('/v1/restore', body);
      if (opts.json) return json(r);
      out(`Restored domain ${r.name} (id=${r.id}, ${r.state}) from ${r.file} in ${seconds(r.elapsedMs)}`);
    });
}
