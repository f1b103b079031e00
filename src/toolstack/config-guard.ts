/**
 * The toolstack's half of config validation: the pure validator (config/validate.ts) with this
 * daemon's floor and protected paths, plus what needs the filesystem: a kernel, ramdisk or disk
 * that is, through a symlink or a hard link, one of xenod's own files (its state dir, database,
 * log, socket, relocation key) is refused, so a guest can never read or overwrite them.
 */
import { realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import { XenoError } from '../common/errors.js';
import { validateDomainConfig, type ValidateOptions } from '../config/validate.js';
import { within } from '../config/validate-fields.js';
import type { DaemonConfig } from '../model/daemon-config.js';
import type { DomainConfig } from '../model/domain-config.js';

/** xenod's own files and dirs, which no guest file may be or be under. */
export function protectedPaths(cfg: DaemonConfig): string[] {
  return [cfg.stateDir, cfg.relocationKeyFile, cfg.logfile, cfg.unixPath].filter((p): p is string => !!p).map((p) => path.resolve(p));
}

export function validateOptionsFor(cfg: DaemonConfig): ValidateOptions {
  return { minGuestMem: cfg.minGuestMem, protectedPaths: protectedPaths(cfg) };
}

function real(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}

function inode(p: string): string | undefined {
  try {
    const st = statSync(p);
    return st.isFile() ? `${st.dev}:${st.ino}` : undefined;
  } catch {
    return undefined;
  }
}

/** The guest files of a (validated) config, by field name. */
function guestFiles(c: DomainConfig): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  if (c.kernel) out.push(['kernel', c.kernel]);
  if (c.ramdisk) out.push(['ramdisk', c.ramdisk]);
  c.disks.forEach((d, i) => d.target && out.push([`disks[${i}].target`, d.target]));
  return out;
}

/** Refuses guest files that resolve (symlinks) or link (hard links) to xenod's own files. */
export function checkGuestFiles(c: DomainConfig, cfg: DaemonConfig): void {
  const dirs = protectedPaths(cfg).map((p) => [p, real(p)] as const);
  const files = [...protectedPaths(cfg), path.join(cfg.stateDir, 'xeno.db'), path.join(cfg.stateDir, 'xenod.log')];
  const inodes = new Map(files.map((f) => [inode(f), f] as const).filter(([i]) => i !== undefined));
  for (const [field, file] of guestFiles(c)) {
    const r = real(file);
    const hit = dirs.find(([, rp]) => within(r, rp));
    const linked = inodes.get(inode(file));
    if (hit || linked) {
      throw new XenoError('CONFIG_INVALID', `${field}: ${file} is xenod's own state (${hit?.[0] ?? linked}): a guest may not use it`, { field });
    }
  }
}

/** The one validator plus the filesystem checks: what every door of the toolstack calls. */
export function validateForDaemon(raw: unknown, cfg: DaemonConfig): DomainConfig {
  const c = validateDomainConfig(raw, validateOptionsFor(cfg));
  checkGuestFiles(c, cfg);
  return c;
}
