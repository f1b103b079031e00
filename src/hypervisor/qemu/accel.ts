/**
 * Choosing the accelerator once, at start-up. `/dev/kvm` existing is not proof that KVM runs guests
 * (nested or paravirtual KVM flavours hang), so: the CPU must advertise vmx/svm, /dev/kvm must open,
 * and a bounded probe must boot a 512-byte guest that writes to the serial port and exits QEMU.
 */
import { spawn } from 'node:child_process';
import { constants, accessSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AccelChoice } from '../../model/daemon-config.js';
import type { Accel } from '../backend.js';

export interface AccelDecision {
  accel: Accel;
  reason: string;
}

export interface AccelFacts {
  cpuFlags: string[];
  kvmDeviceUsable: boolean;
  /** Result of booting the probe under KVM; undefined when not run. */
  probe?: { ok: boolean; detail: string };
}

/** Pure decision from gathered facts: the unit-testable part. */
export function decideAccel(choice: AccelChoice, facts: AccelFacts): AccelDecision {
  if (choice === 'tcg') return { accel: 'tcg', reason: 'accel tcg set in the daemon config' };
  if (choice === 'kvm') return { accel: 'kvm', reason: 'accel kvm set in the daemon config (not probed)' };
  const hw = facts.cpuFlags.includes('vmx') ? 'vmx' : facts.cpuFlags.includes('svm') ? 'svm' : undefined;
  if (!hw) return { accel: 'tcg', reason: 'the CPU advertises no vmx/svm flag: falling back to TCG emulation' };
  if (!facts.kvmDeviceUsable) return { accel: 'tcg', reason: `CPU has ${hw} but /dev/kvm cannot be opened: falling back to TCG emulation` };
  if (!facts.probe) return { accel: 'tcg', reason: 'KVM probe not run: falling back to TCG emulation' };
  if (!facts.probe.ok) return { accel: 'tcg', reason: `/dev/kvm is present but a probe guest failed under KVM (${facts.probe.detail}): falling back to TCG emulation` };
  return { accel: 'kvm', reason: `KVM (${hw}) works: probe guest booted and exited` };
}

export function readCpuFlags(): string[] {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags'));
    return line ? line.split(':')[1]!.trim().split(/\s+/) : [];
  } catch {
    return [];
  }
}

function kvmDeviceUsable(): boolean {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Real-mode boot sector: `mov dx,0x3f8; mov al,'K'; out dx,al; mov dx,0xf4; mov al,0x10; out dx,al;
 * hlt`. With isa-debug-exit at 0xf4, QEMU exits with status (0x10 << 1) | 1 = 33.
 */
export function probeImage(): Buffer {
  const img = Buffer.alloc(512);
  Buffer.from([0xba, 0xf8, 0x03, 0xb0, 0x4b, 0xee, 0xba, 0xf4, 0x00, 0xb0, 0x10, 0xee, 0xf4, 0xeb, 0xfe]).copy(img);
  img[510] = 0x55;
  img[511] = 0xaa;
  return img;
}

export function probeKvm(qemuBinary: string, timeoutMs = 4000): Promise<{ ok: boolean; detail: string }> {
  return probeGuest(qemuBinary, { accel: 'kvm', timeoutMs });
}

/**
 * Boot the probe image (or `image`, for tests) under `accel`: ok only if QEMU exits with the
 * isa-debug-exit status 33 having written 'K' to the serial port, within `timeoutMs`.
 */
export function probeGuest(qemuBinary: string, opts: { accel: Accel; timeoutMs: number; image?: Buffer }): Promise<{ ok: boolean; detail: string }> {
  const { accel, timeoutMs } = opts;
  const dir = mkdtempSync(path.join(tmpdir(), 'xeno-kvm-probe-'));
  const img = path.join(dir, 'probe.img');
  writeFileSync(img, opts.image ?? probeImage());
  return new Promise((resolve) => {
    const child = spawn(
      qemuBinary,
      ['-machine', `pc,accel=${accel}`, '-nodefaults', '-no-user-config', '-display', 'none', '-m', '16',
        '-drive', `file=${img},format=raw,if=ide`, '-serial', 'stdio', '-device', 'isa-debug-exit,iobase=0xf4,iosize=1'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout.on('data', (d) => (out += String(d)));
    child.stderr.on('data', (d) => (out += String(d)));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      rmSync(dir, { recursive: true, force: true });
      if (code === 33 && out.includes('K')) resolve({ ok: true, detail: 'probe exited 33' });
      else if (signal) resolve({ ok: false, detail: `no answer within ${timeoutMs} ms` });
      else resolve({ ok: false, detail: `exit ${code}: ${out.trim().slice(0, 200)}` });
    });
  });
}

/**
 * Gather the facts and decide. The probe result is cached per boot (keyed by the kernel's boot_id and
 * the QEMU binary) in a host-wide runtime file, so several daemons or restarts do not pay it again.
 */
export async function detectAccel(
  choice: AccelChoice,
  qemuBinary: string,
  cacheDir = '/run/xeno',
  /** Tests: the host facts and the probe, instead of this host's. */
  host: { cpuFlags?: string[]; kvmDeviceUsable?: boolean; probe?: (binary: string) => Promise<{ ok: boolean; detail: string }> } = {},
): Promise<AccelDecision> {
  const facts: AccelFacts = { cpuFlags: host.cpuFlags ?? readCpuFlags(), kvmDeviceUsable: host.kvmDeviceUsable ?? kvmDeviceUsable() };
  const needsProbe = choice === 'auto' && facts.kvmDeviceUsable && (facts.cpuFlags.includes('vmx') || facts.cpuFlags.includes('svm'));
  if (needsProbe) {
    let bootId = '';
    try {
      bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    } catch {
      /* no cache key: probe every time */
    }
    const cacheFile = path.join(cacheDir, 'kvm-probe.json');
    try {
      const cached = JSON.parse(readFileSync(cacheFile, 'utf8')) as { bootId: string; binary: string; probe: AccelFacts['probe'] };
      if (bootId && cached.bootId === bootId && cached.binary === qemuBinary) facts.probe = cached.probe;
    } catch {
      /* no cache yet */
    }
    if (!facts.probe) {
      facts.probe = await (host.probe ?? probeKvm)(qemuBinary);
      try {
        mkdirSync(cacheDir, { recursive: true });
        if (bootId) writeFileSync(cacheFile, JSON.stringify({ bootId, binary: qemuBinary, probe: facts.probe }));
      } catch {
        /* cache is an optimisation */
      }
    }
  }
  return decideAccel(choice, facts);
}
