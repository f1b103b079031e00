/**
 * Operating routes: managed guests (xm new / start / delete, list --all), the host stop that
 * xendomains.service runs at shutdown, following the daemon's log; and at start-up, bringing back
 * what the last host stop saved or shut down, then the boot's autostart.
 */
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { errorMessage } from '../../common/errors.js';
import { applyOverrides, parseXlCfg } from '../../config/index.js';
import { DEFAULT_MANAGED, managedKeysOf, type ManagedKeys } from '../../config/managed-keys.js';
import type { CreateRequest } from '../../model/api.js';
import { HOST_STOP_MODES, operatingKeys, type HostStopMode } from '../../model/daemon-config.js';
import type { OffDomainInfo } from '../../model/definition.js';
import { runAutostart } from '../../toolstack/autostart.js';
import { DefinitionStore, Definitions } from '../../toolstack/definitions.js';
import { HostStop } from '../../toolstack/host-stop.js';
import type { DaemonContext } from '../context.js';
import { configFromRequest } from './domains.js';
import { saveRestoreOf } from './save-restore.js';

type NameReq = { Params: { name: string } };
const nameParam = { type: 'object', required: ['name'], properties: { name: { type: 'string', minLength: 1, maxLength: 64 } } } as const;

interface NewRequest extends CreateRequest {
  /** Keep a running guest (started with create) as a definition, from its current config. */
  fromDomain?: string;
  autostart?: boolean;
  autostartOrder?: number;
  autostartDelay?: number;
}

function managedOf(body: NewRequest): ManagedKeys {
  let m: ManagedKeys = { ...DEFAULT_MANAGED };
  if (body.cfgText !== undefined) {
    let ast = parseXlCfg(body.cfgText, body.cfgFile ?? '<request>');
    if (body.overrides?.length) ast = applyOverrides(ast, body.overrides);
    m = managedKeysOf(ast);
  }
  if (body.autostart !== undefined) m.autostart = body.autostart;
  if (body.autostartOrder !== undefined) m.autostartOrder = body.autostartOrder;
  if (body.autostartDelay !== undefined) m.autostartDelay = body.autostartDelay;
  return m;
}

export function registerOperateRoutes(app: FastifyInstance, ctx: DaemonContext): void {
  const ts = ctx.toolstack;
  const defs = new Definitions(new DefinitionStore(() => path.join(ctx.config.stateDir, 'xeno.db')), ts);
  const hostStop = new HostStop(ts, saveRestoreOf(ctx), defs);
  const keys = operatingKeys(ctx.config);
  ctx.services.definitions = defs;

  // After the managed restore (registered before): the last host stop's guests, then autostart.
  app.addHook('onReady', async () => {
    if (typeof ctx.config.stateDir !== 'string') return; // the API documentation's stand-in context
    try {
      for (const r of await hostStop.resume()) ctx.log[r.ok ? 'info' : 'error']({ domain: r.name }, `host start: ${r.action}: ${r.message}`);
    } catch (e) {
      ctx.log.error({ err: e }, `host start failed: ${errorMessage(e)}`);
    }
    // In the background: autostart delays must not hold the API (or the readiness) back.
    setImmediate(() => {
      runAutostart(ts, defs, { autoDir: keys.autoDir, unixPath: ctx.config.unixPath, log: ctx.log })
        .then((rs) => rs.forEach((r) => ctx.log[r.ok ? 'info' : 'error']({ domain: r.name }, `autostart: ${r.message}`)))
        .catch((e: unknown) => ctx.log.error({ err: e }, `autostart failed: ${errorMessage(e)}`));
    });
  });
  app.addHook('onClose', async () => defs.store.close());

  app.get('/v1/definitions', { schema: { summary: 'Defined (managed) guests, running or not (xm list --all)' } }, async () => {
    const off: OffDomainInfo[] = [];
    for (const d of defs.list()) {
      if (ts.deps.store.byName(d.name)) continue;
      const c = d.config;
      off.push({ id: null, name: d.name, uuid: c.uuid ?? null, state: 'off', stateFlags: '------', memory: c.memory, maxmem: c.maxmem, vcpus: c.vcpus, maxvcpus: c.maxvcpus, cpuTime: 0, autostart: d.autostart });
    }
    return { definitions: defs.list(), off };
  });

  app.post<{ Body: NewRequest }>(
    '/v1/definitions',
    {
      schema: {
        summary: 'Define a guest without starting it (xm new), from a config or from a running domain',
        body: {
          type: 'object',
          properties: {
            cfgText: { type: 'string' }, cfgFile: { type: 'string' }, overrides: { type: 'array', items: { type: 'string' } }, cwd: { type: 'string' },
            fromDomain: { type: 'string' }, autostart: { type: 'boolean' },
            autostartOrder: { type: 'integer', minimum: 0, maximum: 1000000 }, autostartDelay: { type: 'integer', minimum: 0, maximum: 3600 },
          },
        },
      },
    },
    async (req, reply) => {
      const warnings: string[] = [];
      const managed = managedOf(req.body);
      const def = req.body.fromDomain !== undefined ? defs.keep(req.body.fromDomain, managed) : defs.define(configFromRequest(req.body, warnings), managed);
      void reply.status(201);
      return { definition: def, warnings };
    },
  );

  app.post<NameReq & { Body: { paused?: boolean } | undefined }>(
    '/v1/definitions/:name/start',
    { schema: { summary: 'Start a defined guest (xm start)', params: nameParam, body: { type: ['object', 'null'], properties: { paused: { type: 'boolean' } } } } },
    async (req) => {
      const rec = await defs.start(req.params.name, { paused: req.body?.paused });
      return { domain: ts.info(rec) };
    },
  );

  app.delete<NameReq>('/v1/definitions/:name', { schema: { summary: "Forget a guest's definition (xm delete); refused while it runs", params: nameParam } }, async (req) => {
    defs.delete(req.params.name);
    return { ok: true };
  });

  app.post<{ Body: { mode?: HostStopMode; timeout?: number } | undefined }>(
    '/v1/host/stop',
    {
      schema: {
        summary: 'The host is shutting down: save, shut down or leave every guest (xendomains stop)',
        body: { type: ['object', 'null'], properties: { mode: { type: 'string', enum: [...HOST_STOP_MODES] }, timeout: { type: 'integer', minimum: 1, maximum: 86400 } } },
      },
    },
    async (req) => {
      const mode = req.body?.mode ?? keys.onHostStop;
      const timeout = req.body?.timeout ?? keys.hostStopTimeout;
      ctx.log.info(`host stop: ${mode} every guest (timeout ${timeout} s)`);
      return { mode, timeout, results: await hostStop.stop(mode, timeout) };
    },
  );

  // `xeno log -f`: the last lines, then every line appended (a log rotated or truncated is reopened).
  app.get<{ Querystring: { lines?: number } }>(
    '/v1/log/follow',
    { schema: { summary: "Follow the daemon's log: NDJSON lines {line}", querystring: { type: 'object', properties: { lines: { type: 'integer', minimum: 0, default: 20 } } } } },
    async (req, reply) => {
      void reply.hijack();
      const raw = reply.raw;
      raw.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
      const follower = new LogFollower(ctx.logFile, (line) => raw.write(JSON.stringify({ line }) + '\n'));
      follower.start(req.query.lines ?? 20);
      raw.on('close', () => follower.stop());
      return reply;
    },
  );
}

/** tail -F of one file by polling: new bytes as whole lines; a new inode or a shorter file starts over. */
class LogFollower {
  private offset = 0;
  private ino = -1;
  private partial = '';
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly file: string,
    private readonly emit: (line: string) => void,
  ) {}

  start(lastLines: number): void {
    try {
      const st = statSync(this.file);
      this.ino = st.ino;
      const start = Math.max(0, st.size - 256 * 1024);
      const text = this.read(start, st.size);
      this.offset = st.size;
      const lines = text.split('\n').filter(Boolean);
      if (start > 0) lines.shift(); // cut mid-line
      for (const l of lastLines > 0 ? lines.slice(-lastLines) : []) this.emit(l);
    } catch {
      /* no log yet: it starts at 0 once it appears */
    }
    this.timer = setInterval(() => this.poll(), 250);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private read(from: number, to: number): string {
    if (to <= from) return '';
    const fd = openSync(this.file, 'r');
    try {
      const buf = Buffer.alloc(to - from);
      const n = readSync(fd, buf, 0, buf.length, from);
      return buf.subarray(0, n).toString('utf8');
    } finally {
      closeSync(fd);
    }
  }

  private poll(): void {
    let st;
    try {
      st = statSync(this.file);
    } catch {
      return;
    }
    if (st.ino !== this.ino || st.size < this.offset) {
      this.ino = st.ino;
      this.offset = 0;
      this.partial = '';
    }
    if (st.size === this.offset) return;
    const text = this.partial + this.read(this.offset, st.size);
    this.offset = st.size;
    const parts = text.split('\n');
    this.partial = parts.pop() ?? '';
    for (const l of parts) if (l) this.emit(l);
  }
}


