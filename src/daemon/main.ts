/**
 * xenod: the composition root. Reads its xend-config.sxp, picks the accelerator, re-adopts the
 * guests an earlier daemon left running and serves the API on a Unix socket. SIGTERM stops the
 * daemon only: the guests keep running.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { processCmdline, processGone } from '../host/proc.js';
import { createLogger } from '../common/logger.js';
import { errorMessage } from '../common/errors.js';
import { XENO_VERSION } from '../common/version.js';
import { loadDaemonConfigFile } from '../config/index.js';
import { parseListenAddress } from '../config/listen-address.js';
import { QemuBackend } from '../hypervisor/qemu/qemu-backend.js';
import { defaultDaemonConfig, type DaemonConfig } from '../model/daemon-config.js';
import { bootloaderHooks } from '../toolstack/bootloader-hooks.js';
import { composeHooks } from '../toolstack/hooks.js';
import { RuntimeHooks } from '../toolstack/runtime-hooks.js';
import { NetworkManager, instanceIdFor } from '../host/network/network-manager.js';
import { QemuAccess, ensureQemuUser, openRunTree, openTunDevice } from '../host/qemu-user.js';
import { StateStore } from '../toolstack/store.js';
import { Toolstack } from '../toolstack/toolstack.js';
import { recoverMigrations } from '../migration/recovery.js';
import { RelocationServer } from '../migration/server.js';
import { Sampler } from '../metrics/sampler.js';
import { buildApp } from './app.js';
import { notifySystemd } from './notify.js';
import type { DaemonContext } from './context.js';

const USAGE = `usage: xenod [--config FILE] [--state-dir DIR] [--socket PATH] [--accel auto|kvm|tcg] [--save-on-stop] [--network-stop] [--metrics ADDRESS:PORT] [--web ADDRESS:PORT]
Runs in the foreground; logs to stderr and to its log file. SIGTERM stops it and leaves the guests running.
--network-stop undoes the host network setup (the physical interface gets its address back) and exits.
--metrics serves Prometheus metrics on GET /metrics there (a bearer token beyond loopback).
--web serves the web console there (log in with the token xeno web-token prints).`;

function loadConfig(argv: string[]): DaemonConfig {
  const { values } = parseArgs({
    args: argv,
    options: {
      config: { type: 'string' },
      'state-dir': { type: 'string' },
      socket: { type: 'string' },
      accel: { type: 'string' },
      'save-on-stop': { type: 'boolean' },
      'network-stop': { type: 'boolean' },
      metrics: { type: 'string' },
      web: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    process.exit(0);
  }
  if (values.version) {
    process.stdout.write(`xenod ${XENO_VERSION}\n`);
    process.exit(0);
  }
  const warn = (w: string) => process.stderr.write(`xenod: ${w}\n`);
  const config = values.config ? loadDaemonConfigFile(values.config, warn) : defaultDaemonConfig();
  if (values['state-dir']) config.stateDir = path.resolve(values['state-dir']);
  if (process.env.XENO_SOCKET) config.unixPath = process.env.XENO_SOCKET;
  if (values.socket) config.unixPath = path.resolve(values.socket);
  if (values.accel) {
    if (!['auto', 'kvm', 'tcg'].includes(values.accel)) throw new Error(`--accel must be auto, kvm or tcg`);
    config.accel = values.accel as DaemonConfig['accel'];
  }
  if (values['save-on-stop']) config.saveOnStop = true;
  if (values.metrics) config.metrics = parseListenAddress(values.metrics, '--metrics');
  if (values.web) config.web = parseListenAddress(values.web, '--web');
  return config;
}

/** One daemon per state dir: a pid file, taken over only from a dead owner. */
function takePidLock(stateDir: string): string {
  const file = path.join(stateDir, 'xenod.pid');
  try {
    const pid = Number(readFileSync(file, 'utf8'));
    if (pid && pid !== process.pid) {
      // A zombie counts as dead: init may reap a killed daemon seconds late.
      if (!processGone(pid) && processCmdline(pid).some((a) => a.includes('xenod'))) {
        throw new Error(`another xenod (pid ${pid}) already uses ${stateDir}`);
      }
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  writeFileSync(file, String(process.pid));
  return file;
}

/** A socket file left by a dead daemon is removed; a live one is an error. */
async function clearStaleSocket(sock: string): Promise<void> {
  if (!existsSync(sock)) return;
  const alive = await new Promise<boolean>((resolve) => {
    const c = net.createConnection(sock);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
  if (alive) throw new Error(`a daemon already listens on ${sock}`);
  rmSync(sock, { force: true });
}

export async function main(argv: string[]): Promise<void> {
  const config = loadConfig(argv);
  mkdirSync(config.stateDir, { recursive: true, mode: 0o700 });
  const pidFile = takePidLock(config.stateDir);
  const logFile = config.logfile ?? path.join(config.stateDir, 'xenod.log');
  const log = createLogger(config.loglevel, logFile, { maxBytes: config.logSizeBytes, keep: config.logCount });
  // Every QEMU runs as this unprivileged user; it can cross into the run dirs, nothing more.
  const qemuUser = ensureQemuUser(config.qemuUser);
  const runRoot = path.join(config.stateDir, 'run');
  openRunTree(runRoot, qemuUser);
  openTunDevice(qemuUser);

  // The host network: re-adopted from an earlier run, else set up when the first vif needs it.
  const network = new NetworkManager({ config, instanceId: instanceIdFor(config.stateDir), log, tapOwner: qemuUser.uid });
  if (argv.includes('--network-stop')) {
    await network.stopHost(); // the explicit stop: the physical interface gets its address back
    rmSync(pidFile, { force: true });
    log.flush();
    return;
  }
  await network.resume();

  const backend = await QemuBackend.create({ binary: config.qemuBinary, accel: config.accel, cacheDir: path.dirname(config.unixPath), runAs: qemuUser });
  if (backend.caps.accel === 'tcg') log.warn(`WARNING: no usable KVM, guests run under TCG emulation (slow): ${backend.caps.accelReason}`);
  else log.info(`accelerator: ${backend.caps.accelReason}`);

  const store = new StateStore(path.join(config.stateDir, 'xeno.db'), { eventLimit: config.eventLimit });
  const runtimeHooks = new RuntimeHooks({ config, log });
  const hooks = composeHooks(bootloaderHooks(log), new QemuAccess(qemuUser, runRoot).hooks(), runtimeHooks, network.hooks());
  const toolstack = new Toolstack({ config, backend, store, log, hooks });
  await toolstack.adoptAll();
  await recoverMigrations(toolstack);

  // one sampler for every domain, running from the start so any view has a real CPU % at once
  const sampler = new Sampler(toolstack);
  sampler.start();
  // the Prometheus side (prom-client) is loaded only when asked for: off by default
  const exporter = config.metrics ? new (await import('../metrics/exporter.js')).MetricsExporter(sampler) : undefined;
  const ctx: DaemonContext = { toolstack, config, log, logFile, services: { network, runtimeHooks, sampler, exporter } };
  // a pooled host (xeno-pool-* keys): joins before the relocation server starts (the pool's key)
  const pool = config.pool ? new (await import('../pool/service.js')).PoolService(toolstack, config, log) : undefined;
  // pool HA (src/pool/ha): the host lease keeper, fencing, the leader's HA restarts
  const ha = pool ? new (await import('../pool/ha/service.js')).HaService(pool, toolstack, log, async (name) => {
    await (await import('./pool/routes.js')).startHere(ctx, pool, await pool.definition(name), false);
  }) : undefined;
  if (pool) {
    await ha!.start().catch((e: unknown) => log.error(`pool HA did not start: ${(e as Error).message}`));
    await pool.start();
    ctx.services.pool = pool;
  }
  const app = await buildApp(ctx);
  mkdirSync(path.dirname(config.unixPath), { recursive: true, mode: 0o755 });
  await clearStaleSocket(config.unixPath);
  await app.listen({ path: config.unixPath });
  chmodSync(config.unixPath, 0o600);
  // a pooled target records the guest in running/ at the commit, not at its next sync
  const relocation = await RelocationServer.start(toolstack, config, log, pool ? { committed: (name, domid) => pool.migratedIn(name, domid) } : {});
  const metrics = config.metrics && exporter
    ? await (await import('../metrics/server.js')).startMetricsServer(exporter, { ...config.metrics, tokenFile: config.metricsTokenFile ?? path.join(config.stateDir, 'metrics.token'), log })
    : undefined;
  // loaded only when asked for: its static and websocket plugins cost a standalone xenod ~5 MB
  const web = config.web ? await (await import('./web/server.js')).startWebServer(ctx, config.web) : undefined;
  const door = pool ? await (await import('./pool/door.js')).openPoolDoor(pool, config.unixPath) : undefined;
  log.info({ socket: config.unixPath, stateDir: config.stateDir, qemu: backend.caps.qemuVersion, machine: backend.caps.machineType }, `xenod ${XENO_VERSION} ready`);
  await notifySystemd(log, ['--ready', `--status=serving ${config.unixPath}`]);

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info(`${signal}: stopping xenod; guests keep running`);
    void notifySystemd(log, ['STOPPING=1']);
    await relocation?.close().catch(() => undefined);
    await new Promise((r) => (metrics ? metrics.close(r) : r(undefined)));
    await web?.close().catch(() => undefined);
    door?.close();
    door?.closeAllConnections();
    await ha?.stop().catch(() => undefined);
    pool?.close();
    await app.close().catch(() => undefined);
    sampler.stop();
    toolstack.detachAll();
    network.close();
    store.close();
    rmSync(pidFile, { force: true });
    log.flush();
    setTimeout(() => process.exit(0), 50);
  };
  // A daemon that dies on one bad promise would orphan every guest's supervision: log and go on.
  process.on('unhandledRejection', (e) => log.error({ err: e }, 'unhandled rejection'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

main(process.argv.slice(2)).catch((e) => {
  process.stderr.write(`xenod: ${errorMessage(e)}\n`);
  process.exit(1);
});
