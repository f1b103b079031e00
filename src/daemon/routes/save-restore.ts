/**
 * Save and restore routes (xm save / xm restore), and the managed save around xenod's stop/start.
 *
 * Both are long operations. With `progress: true` in the body the answer is a stream of JSON lines
 * (`application/x-ndjson`): `{"event":"progress","bytes","done","total"}` at most every 100 ms, then
 * one `{"event":"result","result":{...}}` or `{"event":"error","error":{code,message}}`. Checks that
 * refuse at once (no such domain, a bad or incompatible file, a name that runs, missing disks, not
 * enough memory) still come back as an ordinary HTTP error before the stream starts. Without
 * `progress` the answer is the result as JSON once done. A client going away does not stop a save
 * or a restore half-way.
 */
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { XenoError, errorMessage } from '../../common/errors.js';
import { SaveRestore, type RestorePlan } from '../../toolstack/save-restore.js';
import type { SaveProgress } from '../../toolstack/savefile/format.js';
import { openSaveFile } from '../../toolstack/savefile/reader.js';
import type { DaemonContext } from '../context.js';
import { domParam } from './schemas.js';
import { streamed } from './streamed.js';

export interface SaveRequest {
  /** Absolute, or relative to cwd. */
  file: string;
  cwd?: string;
  checkpoint?: boolean;
  freeze?: boolean;
  progress?: boolean;
}

export interface RestoreRequest {
  file: string;
  cwd?: string;
  paused?: boolean;
  progress?: boolean;
}

/** The save/restore service: one per daemon, kept in ctx.services. */
export function saveRestoreOf(ctx: DaemonContext): SaveRestore {
  const existing = ctx.services.saveRestore;
  if (existing instanceof SaveRestore) return existing;
  const sr = new SaveRestore(ctx.toolstack);
  ctx.services.saveRestore = sr;
  return sr;
}

function absolute(file: string, cwd?: string): string {
  if (path.isAbsolute(file)) return path.normalize(file);
  if (!cwd || !path.isAbsolute(cwd)) throw new XenoError('BAD_REQUEST', `'${file}' is a relative path: give an absolute one, or cwd`);
  return path.resolve(cwd, file);
}

export function registerSaveRestoreRoutes(app: FastifyInstance, ctx: DaemonContext, door: 'unix' | 'web' = 'unix'): void {
  const sr = saveRestoreOf(ctx);
  const ts = ctx.toolstack;
  if (door === 'unix') registerManagedSave(app, ctx, sr);
  registerSaveRestoreApi(app, sr, ts);
}

/** The managed save around xenod's start and stop (once per daemon, on the API socket's app). */
function registerManagedSave(app: FastifyInstance, ctx: DaemonContext, sr: SaveRestore): void {
  // Start-up: finish saves a dead xenod left half-done, then bring back the managed saves, all
  // before the socket accepts requests.
  app.addHook('onReady', async () => {
    try {
      await sr.recover();
      const restored = await sr.restoreAll();
      for (const r of restored) ctx.log[r.ok ? 'info' : 'error']({ domain: r.name }, `managed restore: ${r.message}`);
    } catch (e) {
      ctx.log.error({ err: e }, `save/restore start-up recovery failed: ${errorMessage(e)}`);
    }
  });

  // Stop with save-on-stop (xenod --save-on-stop, or xeno-save-on-stop in the config): every guest
  // is saved into the state dir, to be restored at the next start. A guest whose save fails keeps
  // running and is re-adopted then.
  app.addHook('onClose', async () => {
    if (!ctx.config.saveOnStop) return;
    try {
      const saved = await sr.saveAll();
      for (const r of saved) ctx.log[r.ok ? 'info' : 'error']({ domain: r.name }, `managed save: ${r.message}`);
    } catch (e) {
      ctx.log.error({ err: e }, `managed save failed: ${errorMessage(e)}`);
    }
  });
}

function registerSaveRestoreApi(app: FastifyInstance, sr: SaveRestore, ts: DaemonContext['toolstack']): void {
  app.post<{ Params: { dom: string }; Body: SaveRequest }>(
    '/v1/domains/:dom/save',
    {
      schema: {
        summary: "Save a domain's whole state to a file and free it (xm save); checkpoint keeps it running",
        params: domParam,
        body: {
          type: 'object',
          required: ['file'],
          properties: {
            file: { type: 'string', minLength: 1, description: 'destination file (absolute, or relative to cwd)' },
            cwd: { type: 'string' },
            checkpoint: { type: 'boolean', default: false, description: 'keep the domain running afterwards (xm save -c)' },
            freeze: { type: 'boolean', default: false, description: "freeze the guest's file systems through its agent for the save" },
            progress: { type: 'boolean', default: false, description: 'answer with NDJSON progress lines' },
          },
        },
      },
    },
    async (req, reply) => {
      const file = absolute(req.body.file, req.body.cwd);
      ts.resolve(req.params.dom); // 404 before any stream starts
      const run = (onProgress?: (p: SaveProgress) => void) => sr.save(req.params.dom, file, { checkpoint: req.body.checkpoint, freeze: req.body.freeze, onProgress });
      if (!req.body.progress) return run();
      await streamed(reply, run);
      return reply;
    },
  );

  app.post<{ Body: RestoreRequest }>(
    '/v1/restore',
    {
      schema: {
        summary: 'Recreate a domain from a save file with a new id and resume it (xm restore); paused leaves it paused',
        body: {
          type: 'object',
          required: ['file'],
          properties: {
            file: { type: 'string', minLength: 1, description: 'save file (absolute, or relative to cwd)' },
            cwd: { type: 'string' },
            paused: { type: 'boolean', default: false, description: 'leave the domain paused (xm restore -p)' },
            progress: { type: 'boolean', default: false, description: 'answer with NDJSON progress lines' },
          },
        },
      },
    },
    async (req, reply) => {
      const file = absolute(req.body.file, req.body.cwd);
      const plan: RestorePlan = await sr.plan(file); // refusals are plain HTTP errors
      const run = (onProgress?: (p: SaveProgress) => void) => sr.restore(file, { paused: req.body.paused, onProgress, plan });
      if (!req.body.progress) return run();
      await streamed(reply, run);
      return reply;
    },
  );

  app.get<{ Querystring: { file: string; cwd?: string } }>(
    '/v1/save-file',
    {
      schema: {
        summary: "A save file's header (name, config, QEMU machine type and version, sizes), checked but not restored",
        querystring: { type: 'object', required: ['file'], properties: { file: { type: 'string' }, cwd: { type: 'string' } } },
      },
    },
    async (req) => {
      const info = await openSaveFile(absolute(req.query.file, req.query.cwd));
      return {
        file: info.path, formatVersion: info.formatVersion, header: info.header, fileSize: info.fileSize,
        payloadLength: info.payloadLength, sha256: info.trailerSha256,
      };
    },
  );
}
