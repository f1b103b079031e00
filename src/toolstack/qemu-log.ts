/**
 * What a domain's QEMU leaves behind and what it shows once running: its stderr log (one per run,
 * in the run dir, where the shutdown trace of that run is read: vm.ts stopReason), appended to the
 * one kept beside the console log (state/console/NAME.qemu.log) when the run dir goes, so it
 * outlives the run and tells why a QEMU died; and its VNC display, whose password is set over QMP
 * (never on the command line).
 */
import { appendFileSync, existsSync, readFileSync, renameSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Vm } from '../hypervisor/backend.js';
import type { DomainConfig } from '../model/domain-config.js';

/** A log grows across restarts of the domain; past this it is moved to NAME.qemu.log.old. */
const ROTATE_BYTES = 1024 * 1024;

export function qemuLogFor(stateDir: string, name: string): string {
  return path.join(stateDir, 'console', `${name}.qemu.log`);
}

/** A run's QEMU log, in its run dir. */
export function runQemuLog(runDir: string): string {
  return path.join(runDir, 'qemu.log');
}

/** Before a run dir goes: its QEMU log is appended to the domain's kept log (rotated past 1 MiB). */
export function keepQemuLog(runDir: string, kept: string): void {
  try {
    const text = readFileSync(runQemuLog(runDir));
    if (!text.length) return;
    try {
      if (statSync(kept).size > ROTATE_BYTES) renameSync(kept, `${kept}.old`);
    } catch {
      /* no kept log yet */
    }
    appendFileSync(kept, text, { mode: 0o600 });
  } catch {
    /* no log for this run, or a full disk: the diagnosis costs lines, never the stop */
  }
}

/** The last lines of a QEMU log, one string (`a | b`), or '' when there are none. */
export function qemuLogTail(file: string, lines = 8, maxChars = 2000): string {
  if (!existsSync(file)) return '';
  try {
    const text = readFileSync(file, 'utf8').trim();
    return text ? text.split('\n').slice(-lines).join(' | ').slice(-maxChars) : '';
  } catch {
    return '';
  }
}

/**
 * Sets the VNC password of a freshly started QEMU (`-vnc ...,password=on` refuses every client
 * until then) and returns the address it listens on (`127.0.0.1:5901`).
 */
export async function setUpVnc(vm: Vm, c: DomainConfig): Promise<string | undefined> {
  if (!c.vnc) return undefined;
  if (c.vnc.password !== undefined) await vm.command('change-vnc-password', { password: c.vnc.password });
  const q = await vm.command<{ enabled: boolean; host?: string; service?: string }>('query-vnc');
  if (!q.enabled || q.service === undefined) return undefined;
  const host = q.host && q.host.includes(':') ? `[${q.host}]` : q.host ?? c.vnc.listen;
  return `${host}:${q.service}`;
}
