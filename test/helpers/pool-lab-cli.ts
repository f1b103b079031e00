/**
 * scripts/lab-pool up|env|kill|down: the test pool lab (pool-lab.ts) for a human. `up` builds the
 * three hosts with the same code as the tests, but with every etcd member and xenod detached (logs
 * in the lab's directory) so they outlive this command, and writes what it made to the state file;
 * `env HOST` prints the shell exports that point the CLI at a host (for `eval`); `kill HOST` is a
 * power cut (every process in its namespace SIGKILLed); `down` removes exactly what `up` made:
 * every process in the lab's namespaces, their cgroups, the namespaces, the directory.
 */
import { spawn } from 'node:child_process';
import { existsSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { DomainCgroups, cgroupInstanceName } from '../../src/host/cgroups.js';
import { currentHostFiles } from '../../src/pool/admin.js';
import { cgroupLayout } from './host-probes.js';
import { REPO, XENOD_NODE_FLAGS, sleep } from './harness.js';
import { PoolLab, killNamespace } from './pool-lab.js';

const STATE = process.env.XENO_LAB_POOL_STATE ?? '/run/xeno-lab-pool.json';

interface LabState {
  dir: string;
  sw: string;
  /** Every namespace of the lab, written before anything runs in them (down removes them all). */
  namespaces: string[];
  images: string;
  hosts: Array<{ name: string; ns: string; address: string; socket: string; stateDir: string }>;
}

function labState(): LabState {
  if (!existsSync(STATE)) throw new Error(`no pool lab is up (${STATE}): scripts/lab-pool up first`);
  return JSON.parse(readFileSync(STATE, 'utf8')) as LabState;
}

function labHost(name: string | undefined): { state: LabState; host: LabState['hosts'][number] } {
  const state = labState();
  const host = state.hosts.find((x) => x.name === name);
  if (!host) throw new Error(`usage: scripts/lab-pool env|kill HOST, HOST one of ${state.hosts.map((x) => x.name).join(', ')}`);
  return { state, host };
}

/** Shell-quoted (the lab's paths are mkdtemp's, but a TMPDIR may hold anything). */
const sq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

function env(name: string | undefined): void {
  const { state, host } = labHost(name);
  process.stdout.write(`export XENO_SOCKET=${sq(host.socket)}\nexport POOL_IMAGES=${sq(state.images)}\nexport HOST_STATE=${sq(host.stateDir)}\n`);
}

async function kill(name: string | undefined): Promise<void> {
  const { host: h } = labHost(name);
  await killNamespace(h.ns);
  process.stdout.write(`${h.name}: every process in its namespace killed (xenod, its QEMUs, its etcd member)\n`);
}

function connects(sock: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.createConnection(sock);
    c.once('connect', () => (c.destroy(), resolve(true)));
    c.once('error', () => resolve(false));
  });
}

async function up(): Promise<void> {
  if (existsSync(STATE)) throw new Error(`a pool lab is already up (${STATE}): scripts/lab-pool down first`);
  const lab = await PoolLab.up({ daemons: false, detached: true });
  const state: LabState = { dir: lab.dir, sw: lab.sw, namespaces: [...lab.hosts.map((h) => h.ns), lab.sw], images: lab.images, hosts: [] };
  writeFileSync(STATE, JSON.stringify(state, null, 2) + '\n');
  try {
    for (const h of lab.hosts) {
      const hostDir = path.join(lab.poolDir, h.name);
      const stateDir = path.join(hostDir, 'state');
      const socket = path.join(hostDir, 'xenod.sock');
      const cfg = path.join(hostDir, 'xend-config.sxp');
      writeFileSync(cfg, ['(xend-relocation-server yes)', '(xend-relocation-port 8002)', currentHostFiles(lab.poolDir, h.name).sxp].join('\n') + '\n');
      state.hosts.push({ name: h.name, ns: h.ns, address: h.address, socket, stateDir });
      writeFileSync(STATE, JSON.stringify(state, null, 2) + '\n');
      const log = openSync(path.join(hostDir, 'xenod.stderr'), 'a');
      spawn('ip', ['netns', 'exec', h.ns, process.execPath, ...XENOD_NODE_FLAGS, path.join(REPO, 'bin/xenod.js'), '--config', cfg, '--state-dir', stateDir, '--socket', socket], { detached: true, stdio: ['ignore', log, log] }).unref();
      for (let i = 0; i < 600 && !(await connects(socket)); i++) await sleep(100);
      if (!(await connects(socket))) throw new Error(`xenod of ${h.name} did not come up (see ${hostDir}/xenod.stderr)`);
    }
  } catch (e) {
    await down();
    throw e;
  }
  process.stdout.write(`pool lab up: pool ${lab.pool}, directory ${lab.poolDir}, images in ${lab.images}\n`);
  for (const h of state.hosts) process.stdout.write(`  ${h.name} ${h.address}: XENO_SOCKET=${h.socket} xeno host-list\n`);
  process.stdout.write('eval "$(scripts/lab-pool env HOST)" points xeno at a host; scripts/lab-pool down removes it all.\n');
}

async function down(): Promise<void> {
  if (!existsSync(STATE)) {
    process.stdout.write('no pool lab is up\n');
    return;
  }
  const state = labState();
  await PoolLab.removeNamespaces(state.namespaces, state.dir);
  const layout = cgroupLayout();
  for (const h of state.hosts) if (layout) await new DomainCgroups(layout, cgroupInstanceName(h.stateDir)).removeAll().catch(() => undefined);
  rmSync(state.dir, { recursive: true, force: true });
  rmSync(STATE, { force: true });
  process.stdout.write('pool lab down\n');
}

const cmd = process.argv[2];
const commands: Record<string, () => Promise<void> | void> = { up, down, env: () => env(process.argv[3]), kill: () => kill(process.argv[3]) };
Promise.resolve()
  .then(() => {
    const run = cmd !== undefined && Object.hasOwn(commands, cmd) ? commands[cmd] : undefined;
    if (!run) throw new Error('usage: scripts/lab-pool up|env HOST|kill HOST|down');
    return run();
  })
  .catch((e: unknown) => {
  process.stderr.write(`lab-pool: ${(e as Error).message}\n`);
  process.exit(1);
});
