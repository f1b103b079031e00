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
import { hostPath, within } from '../config/validate-fields.js';
import { probeImage, qemuFormatName, type ImageInfo } from '../hypervisor/qemu/image.js';
import type { DaemonConfig } from '../model/daemon-config.js';
import type { DiskSpec, DomainConfig } from '../model/domain-config.js';

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
  for (const [field, file] of guestFiles(c)) checkGuestFile(field, file, cfg);
}

/** One guest file (or a backing file of one): refused when it is, or links to, xenod's own state. */
export function checkGuestFile(field: string, file: string, cfg: DaemonConfig): void {
  const dirs = protectedPaths(cfg).map((p) => [p, real(p)] as const);
  const files = [...protectedPaths(cfg), path.join(cfg.stateDir, 'xeno.db'), path.join(cfg.stateDir, 'xenod.log')];
  const inodes = new Map(files.map((f) => [inode(f), f] as const).filter(([i]) => i !== undefined));
  const r = real(file);
  const hit = dirs.find(([, rp]) => within(r, rp));
  const linked = inodes.get(inode(file));
  if (hit || linked) {
    throw new XenoError('CONFIG_INVALID', `${field}: ${file} is xenod's own state (${hit?.[0] ?? linked}): a guest may not use it`, { field });
  }
}

/** The one validator plus the filesystem checks: what every door of the toolstack calls. */
export function validateForDaemon(raw: unknown, cfg: DaemonConfig): DomainConfig {
  const c = validateDomainConfig(raw, validateOptionsFor(cfg));
  checkGuestFiles(c, cfg);
  return c;
}

/**
 * What each disk image really is, checked against its spec before QEMU opens it: a spec whose
 * format is not the file's is refused both ways (raw on a qcow2 file would hand the guest the qcow2
 * metadata as data, and let it write a header naming any host file as "backing file"; qcow2 on a raw
 * file cannot open). The backing chain is walked without probing (hypervisor/qemu/image.ts) and
 * every backing file must pass the same path rules as a disk target.
 */
export async function checkDiskImages(c: DomainConfig, cfg: DaemonConfig, only?: (d: DiskSpec) => boolean): Promise<void> {
  for (const [i, d] of c.disks.entries()) {
    if (!d.target || (only && !only(d))) continue;
    await checkDiskImage(d, `disks[${i}]`, cfg);
  }
}

export async function checkDiskImage(d: DiskSpec, field: string, cfg: DaemonConfig): Promise<ImageInfo> {
  const rules = validateOptionsFor(cfg);
  const vet = (backing: string, of: string): void => {
    try {
      hostPath(`${field}.target`, backing, rules);
    } catch (e) {
      throw new XenoError('CONFIG_INVALID', `disk ${d.vdev}: backing file of ${of}: ${(e as Error).message}`, { field });
    }
    checkGuestFile(`${field} backing file`, backing, cfg);
  };
  const info = await probeImage(d.target, { vet });
  const want = qemuFormatName(d.format);
  if (info.format !== want) {
    const why = info.format === 'raw'
      ? `the file has no ${d.format} header (it is raw): QEMU could not open it as ${d.format}`
      : `the guest would see the ${info.format} metadata as data, corrupt the image, and could write a header that makes a later open read any host file`;
    throw new XenoError('CONFIG_INVALID', `disk ${d.vdev}: ${d.target} is a ${info.format} image but its spec says format=${d.format}: refused (${why}); write format=${info.format === 'vpc' ? 'vhd' : info.format} in the disk spec`, { field });
  }
  return info;
}
