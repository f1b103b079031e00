/**
 * A test guest started directly with xeno's QEMU argv builder inside a namespace (phase-1 tests and
 * the benchmark's raw-QEMU baseline), with a serial-console shell to run commands in it.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildQemuArgv, type NicBackend } from '../../src/hypervisor/qemu/argv.js';
import { QmpClient } from '../../src/hypervisor/qemu/qmp.js';
import type { DomainConfig } from '../../src/model/domain-config.js';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const KERNEL = path.join(REPO, 'guest/out/vmlinux');
export const RAMDISK = path.join(REPO, 'guest/out/initrd.img');

export function guestConfig(name: string, extra: string): DomainConfig {
  return {
    name, type: 'pv', memory: 128, maxmem: 128, vcpus: 1, maxvcpus: 1, kernel: KERNEL, ramdisk: RAMDISK,
    extra: ['quiet', extra].filter(Boolean).join(' '), hostname: name, disks: [], vifs: [],
    onPoweroff: 'destroy', onReboot: 'restart', onCrash: 'destroy',
  };
}

export class DirectGuest {
  private buf = '';
  private sock?: net.Socket;
  private seq = 0;

  private constructor(
    readonly name: string,
    readonly pid: number,
    readonly dir: string,
  ) {}

  /** Boots a guest in `netns` with the given NICs and extra kernel arguments; resolves once it is up. */
  /**
   * `netns` '' runs QEMU in this namespace; `argv` replaces xeno's argv (a raw-QEMU baseline: it
   * must put the serial console on paths.serial and QMP on paths.qmp).
   */
  static async start(opts: {
    netns: string; name: string; domid: number; dir: string; nics: NicBackend[]; extra: string; track: (pid: number) => void;
    argv?: (paths: { qmp: string; serial: string; hvc: string; qga: string; pidfile: string }) => string[];
    bootTimeoutMs?: number;
  }): Promise<DirectGuest> {
    const dir = path.join(opts.dir, opts.name);
    mkdirSync(dir, { recursive: true });
    const paths = { qmp: path.join(dir, 'qmp.sock'), serial: path.join(dir, 'serial.sock'), hvc: path.join(dir, 'hvc0.sock'), qga: path.join(dir, 'qga.sock'), pidfile: path.join(dir, 'qemu.pid') };
    const argv = opts.argv ? opts.argv(paths) : buildQemuArgv({
      domid: opts.domid, config: guestConfig(opts.name, opts.extra), uuid: randomUUID(), machineType: 'pc', accel: 'tcg',
      paths, nics: opts.nics, tbSizeMb: 32,
    });
    const log = openSync(path.join(dir, 'qemu.log'), 'a');
    const cmd = [...(opts.netns ? ['ip', 'netns', 'exec', opts.netns] : []), 'qemu-system-x86_64', ...argv];
    const child = spawn(cmd[0]!, cmd.slice(1), { stdio: ['ignore', log, log] });
    closeSync(log);
    if (!child.pid) throw new Error('cannot start QEMU');
    opts.track(child.pid);
    const g = new DirectGuest(opts.name, child.pid, dir);
    await g.connect(paths.serial);
    await g.waitFor(/xeno-guest: up/, opts.bootTimeoutMs ?? 60_000);
    return g;
  }

  private async connect(serial: string): Promise<void> {
    const deadline = Date.now() + 15_000;
    for (;;) {
      try {
        this.sock = await new Promise<net.Socket>((resolve, reject) => {
          const s = net.createConnection(serial);
          s.once('connect', () => resolve(s));
          s.once('error', reject);
        });
        this.sock.setEncoding('utf8');
        this.sock.on('data', (d: string) => (this.buf += d));
        this.sock.on('error', () => undefined);
        return;
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }

  get output(): string {
    return this.buf;
  }

  async waitFor(re: RegExp, timeoutMs: number, from = 0): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.buf.slice(from).match(re);
      if (m) return m;
      if (Date.now() > deadline) throw new Error(`${this.name}: console never matched ${re}; tail: ${JSON.stringify(this.buf.slice(-600))}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Runs a shell command on the console; returns its output and exit status. */
  async run(cmd: string, timeoutMs = 30_000): Promise<{ out: string; code: number }> {
    const tag = `Q${++this.seq}x${Math.random().toString(36).slice(2, 6)}`;
    const from = this.buf.length;
    this.sock!.write(`echo ${tag}""B; ${cmd}; echo ${tag}""E$?\n`);
    const m = await this.waitFor(new RegExp(`${tag}B\\r?\\n([\\s\\S]*?)${tag}E(\\d+)`), timeoutMs, from);
    const out = m[1]!.replace(/\r/g, '').replace(/\x1b\[[0-9;]*[A-Za-z]/g, '').split('\n').filter((l) => !/^heartbeat \d+$/.test(l)).join('\n');
    return { out, code: Number(m[2]) };
  }

  async ok(cmd: string, timeoutMs = 30_000): Promise<string> {
    const r = await this.run(cmd, timeoutMs);
    if (r.code !== 0) throw new Error(`${this.name}: "${cmd}" exited ${r.code}: ${r.out}`);
    return r.out;
  }

  private qmp?: QmpClient;

  /** Stops or resumes the guest's vcpus (QMP stop/cont), e.g. to keep an idle guest off the CPUs. */
  async setRunning(running: boolean): Promise<void> {
    this.qmp ??= await QmpClient.connect(path.join(this.dir, 'qmp.sock'), 5000);
    await this.qmp.execute(running ? 'cont' : 'stop');
  }

  kill(): void {
    this.qmp?.close();
    this.sock?.destroy();
    try {
      process.kill(this.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}
