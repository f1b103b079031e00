/**
 * xeno installed into a DESTDIR by scripts/install.sh, and xenod run from it exactly as its systemd
 * unit says (ExecStart's argv, Environment=, NOTIFY_SOCKET from a stand-in manager), with the
 * installed xend-config.sxp pointed at a state dir, socket and auto dir of the test's own.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, copyFileSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { DomainCgroups, cgroupInstanceName, detectCgroups } from '../../src/host/cgroups.js';
import { GUEST, REPO, sleep } from './harness.js';

const execFileP = promisify(execFile);

/** The [Service] settings of a unit file (a key given twice keeps every value). */
export function unitSettings(text: string): Map<string, string[]> {
  const m = new Map<string, string[]>();
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const sec = /^\[(.+)\]$/.exec(line);
    if (sec) {
      section = sec[1]!;
      continue;
    }
    const i = line.indexOf('=');
    if (i < 0) continue;
    const key = `${section}.${line.slice(0, i)}`;
    m.set(key, [...(m.get(key) ?? []), line.slice(i + 1)]);
  }
  return m;
}

/** systemd's default environment of a system service, plus the unit's Environment= lines. */
export function unitEnv(settings: Map<string, string[]>, extra: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8', ...extra };
  for (const l of settings.get('Service.Environment') ?? []) {
    for (const kv of l.split(/\s+/)) {
      const i = kv.indexOf('=');
      if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1).replace(/^"|"$/g, '');
    }
  }
  return env;
}

export class Installed {
  readonly dir = mkdtempSync(path.join(tmpdir(), 'xeno-inst-'));
  readonly root = path.join(this.dir, 'root');
  readonly stateDir = path.join(this.dir, 'state');
  readonly socket = path.join(this.dir, 'run', 'xenod.sock');
  readonly autoDir = path.join(this.dir, 'auto');
  private daemon?: ChildProcess;
  private notifier?: ChildProcess;
  notifications: string[] = [];
  stderr = '';

  async install(): Promise<string> {
    const { stdout } = await execFileP('bash', [path.join(REPO, 'scripts/install.sh')], { env: { ...process.env, DESTDIR: this.root }, cwd: REPO });
    // The test's own daemon: the installed config file, told where this test lives.
    appendFileSync(this.file('/etc/xeno/xend-config.sxp'), `(xeno-state-dir ${this.stateDir})\n(xend-unix-path ${this.socket})\n(xeno-auto-dir ${this.autoDir})\n`);
    return stdout;
  }

  /** A path of the installed system. */
  file(abs: string): string {
    return path.join(this.root, abs);
  }

  unit(name: string): Map<string, string[]> {
    return unitSettings(readFileSync(this.file(`/usr/lib/systemd/system/${name}`), 'utf8'));
  }

  /** An absolute path of a unit's command line, inside the DESTDIR. */
  private rooted(argv: string[]): string[] {
    return argv.map((a) => (a.startsWith('/') ? this.file(a) : a));
  }

  /** ExecStart of xenod.service, as systemd would run it; resolves on READY=1. */
  async startLikeTheUnit(): Promise<number> {
    const s = this.unit('xenod.service');
    const notifySock = path.join(this.dir, `notify-${Date.now()}.sock`);
    this.notifications = [];
    const n = spawn('python3', [path.join(REPO, 'test/helpers/notify-recv.py'), notifySock], { stdio: ['ignore', 'pipe', 'inherit'] });
    this.notifier = n;
    let buf = '';
    await new Promise<void>((resolve, reject) => {
      n.stdout!.on('data', (d) => {
        buf += String(d);
        const lines = buf.split('\n');
        buf = lines.pop()!;
        for (const l of lines) {
          if (l === 'listening') resolve();
          else this.notifications.push(l);
        }
      });
      n.once('exit', (c) => reject(new Error(`notify receiver exited ${c}`)));
    });
    const argv = this.rooted(s.get('Service.ExecStart')![0]!.split(/\s+/));
    this.stderr = '';
    const p = spawn(argv[0]!, argv.slice(1), { env: unitEnv(s, { NOTIFY_SOCKET: notifySock }), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    this.daemon = p;
    p.stderr!.on('data', (d) => (this.stderr += String(d)));
    p.stdout!.resume();
    for (let i = 0; i < 1200; i++) {
      if (this.notifications.some((l) => l.split('|').includes('READY=1'))) return p.pid!;
      if (p.exitCode !== null) throw new Error(`xenod exited ${p.exitCode}: ${this.stderr}`);
      await sleep(50);
    }
    throw new Error(`xenod never said READY=1: ${this.stderr}`);
  }

  /** The unit's stop (KillMode=process): its KillSignal to the main process only. */
  async stopLikeTheUnit(): Promise<void> {
    const s = this.unit('xenod.service');
    const p = this.daemon;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    process.kill(p.pid!, (s.get('Service.KillSignal')?.[0] ?? 'SIGTERM') as NodeJS.Signals);
    await exited;
    this.daemon = undefined;
    this.notifier?.kill();
  }

  /** The installed xeno, against this test's daemon. */
  xeno(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return this.run([this.file('/usr/bin/xeno'), ...args]);
  }

  /** A unit's Exec* command line, run as systemd would (inside the DESTDIR), against this daemon. */
  execOf(unit: string, key: string): Promise<{ code: number; stdout: string; stderr: string }> {
    return this.run(this.rooted(this.unit(unit).get(`Service.${key}`)![0]!.split(/\s+/)));
  }

  private run(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const c = spawn(argv[0]!, argv.slice(1), { env: { ...process.env, XENO_SOCKET: this.socket }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      c.stdout.on('data', (d) => (stdout += String(d)));
      c.stderr.on('data', (d) => (stderr += String(d)));
      c.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    });
  }

  async ok(args: string[]): Promise<string> {
    const r = await this.xeno(args);
    if (r.code !== 0) throw new Error(`xeno ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return r.stdout;
  }

  privateDisk(name: string): string {
    const f = path.join(this.dir, name);
    copyFileSync(GUEST.disk, f);
    return f;
  }

  consoleLog(name: string): string {
    try {
      return readFileSync(path.join(this.stateDir, 'console', `${name}.log`), 'utf8');
    } catch {
      return '';
    }
  }

  async waitConsole(name: string, re: RegExp, from = 0, timeoutMs = 120_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!re.test(this.consoleLog(name).slice(from))) {
      if (Date.now() > deadline) throw new Error(`console of ${name} never matched ${re}: ${this.consoleLog(name).slice(-300)}`);
      await sleep(200);
    }
  }

  lastHeartbeat(name: string): number {
    const all = [...this.consoleLog(name).matchAll(/heartbeat (\d+)\r?\n/g)];
    return all.length ? Number(all[all.length - 1]![1]) : 0;
  }

  /** QEMUs whose command line names this state dir. */
  qemuPids(): number[] {
    const pids: number[] = [];
    for (const e of readdirSync('/proc')) {
      if (!/^\d+$/.test(e)) continue;
      try {
        const argv = readFileSync(`/proc/${e}/cmdline`, 'utf8');
        if (argv.startsWith('qemu-system') && argv.includes(this.stateDir + '/')) pids.push(Number(e));
      } catch {
        /* gone */
      }
    }
    return pids;
  }

  async cleanup(): Promise<void> {
    if (this.daemon && this.daemon.exitCode === null) this.daemon.kill('SIGKILL');
    this.notifier?.kill();
    for (const pid of this.qemuPids()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    for (let i = 0; i < 20; i++) {
      try {
        await new DomainCgroups(detectCgroups(), cgroupInstanceName(this.stateDir)).removeAll();
        break;
      } catch {
        await sleep(100);
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
