/**
 * Disk specifications (xl-disk-configuration(5)), in all three spellings:
 *
 *   keyword     format=raw, vdev=xvda, access=rw, devtype=cdrom, target=/path,with,commas
 *   positional  target,format,vdev,access          (empty fields allowed: `/dev/vg/guest,,hda`)
 *   legacy xm   [prefix:]target,vdev[:cdrom],mode   (`phy:hda1,hda1,w`, `file:/img,xvda,r`)
 *
 * Positional fields and keywords may be mixed; `target=` must come last and takes the rest of the
 * string verbatim. Legacy prefixes (file:, phy:, tap:, tap2:, aio:) are stripped from a positional
 * target and format prefixes (raw:, qcow:, qcow2:, vhd:, qed:) set the format; `phy:` names that are
 * not absolute live in /dev. Errors are XenoError('CONFIG_INVALID') naming the spec; callers add
 * file:line:col.
 */

import { posix as path } from 'node:path';
import { XenoError } from '../common/errors.js';
import { CACHE_MODES, DISK_FORMATS, type CacheMode, type DiskFormat, type DiskSpec } from '../model/domain-config.js';

/** Guest disk names: xvda, hdc, sdb, vdz, xvdaa, and partitions (xvda1) as xm allowed. */
export const VDEV_RE = /^(?:xvd|hd|sd|vd)[a-z]{1,3}[0-9]{0,3}$/;

const LEGACY_MODES: Record<string, 'ro' | 'rw'> = { r: 'ro', ro: 'ro', w: 'rw', rw: 'rw', 'w!': 'rw' };
const BACKEND_TYPES = ['phy', 'tap', 'qdisk', 'standalone'];
/** Flags xl accepts that have no effect here. */
const IGNORED_FLAGS = ['discard', 'no-discard', 'direct-io-safe'];
const DEPRECATED_PREFIXES = ['tap2:', 'tap:', 'aio:', 'file:', 'phy:'];

export interface DiskSpecOptions {
  /** Relative (non-`phy:`) targets are resolved against this; without it they are errors. */
  baseDir?: string;
}

interface Fields {
  target?: string;
  /** The target came from `target=` (taken literally, no prefixes). */
  literalTarget: boolean;
  format?: string;
  vdev?: string;
  access?: string;
  devtype?: string;
  cache?: string;
}

function isFormat(s: string): s is DiskFormat {
  return (DISK_FORMATS as readonly string[]).includes(s);
}

function looksLikeVdev(s: string): boolean {
  return VDEV_RE.test(s.replace(/:(cdrom|disk)$/, ''));
}

export function parseDiskSpec(spec: string, opts: DiskSpecOptions = {}): DiskSpec {
  function fail(why: string): never {
    throw new XenoError('CONFIG_INVALID', `invalid disk "${spec}": ${why}`);
  }
  if (!spec.trim()) fail('empty disk specification');

  const f: Fields = { literalTarget: false };
  const set = (key: 'format' | 'vdev' | 'access' | 'devtype' | 'cache', value: string): void => {
    if (f[key] !== undefined && f[key] !== value) fail(`${key} is given twice ("${f[key]}" and "${value}")`);
    f[key] = value;
  };

  // Split into comma-separated parts, except that `target=` swallows the rest of the string.
  const positional: string[] = [];
  let rest = spec;
  for (;;) {
    const leading = rest.match(/^\s*/)![0].length;
    if (rest.startsWith('target=', leading)) {
      f.target = rest.slice(leading + 'target='.length);
      f.literalTarget = true;
      break;
    }
    const comma = rest.indexOf(',');
    const part = (comma < 0 ? rest : rest.slice(0, comma)).trim();
    const kw = /^([a-z][a-z_-]*)=(.*)$/.exec(part);
    if (kw) {
      const key = kw[1]!;
      const value = kw[2]!.trim();
      switch (key) {
        case 'format':
        case 'vdev':
        case 'access':
        case 'devtype':
        case 'cache':
          set(key, value);
          break;
        case 'backendtype':
          if (!BACKEND_TYPES.includes(value)) fail(`unknown backendtype "${value}" (${BACKEND_TYPES.join(', ')})`);
          break;
        default:
          fail(`unknown parameter "${key}" (expected format=, vdev=, access=, devtype=, backendtype=, cache=, target=)`);
      }
    } else if (part === 'cdrom') {
      set('devtype', 'cdrom');
    } else if (IGNORED_FLAGS.includes(part)) {
      // accepted, no effect
    } else {
      positional.push(part);
    }
    if (comma < 0) break;
    rest = rest.slice(comma + 1);
  }

  // Trailing empty fields (`/a,,hda,,`) say nothing.
  while (positional.length > 1 && positional[positional.length - 1] === '') positional.pop();

  // Assign positional fields: legacy xm form or xl's target,format,vdev,access.
  let legacy = false;
  if (positional.length > 0) {
    const second = positional[1];
    if (positional.length > 4) fail(`too many fields (the positional form is target,format,vdev,access)`);
    if (positional.length === 3 && looksLikeVdev(second!) && Object.hasOwn(LEGACY_MODES, positional[2]!)) {
      legacy = true;
    } else if (positional.length > 1 && second !== '' && !isFormat(second!)) {
      if (looksLikeVdev(second!)) {
        fail(
          `"${second}" is in the place of the format; the legacy form is target,vdev,mode (mode r or w) ` +
            'and the xl form target,format,vdev,access',
        );
      }
      fail(`unknown format "${second}" (${DISK_FORMATS.join(', ')})`);
    }
    if (f.target === undefined) f.target = positional[0];
    else if (positional[0] !== '') fail('the target is given twice (positionally and with target=)');
    const names = legacy ? (['vdev', 'access'] as const) : (['format', 'vdev', 'access'] as const);
    names.forEach((name, i) => {
      const v = positional[i + 1];
      if (v !== undefined && v !== '') set(name, v);
    });
  }

  // Target prefixes (not for target=, which is literal).
  let target = f.target ?? '';
  let phy = false;
  let prefixFormat: string | undefined;
  if (!f.literalTarget) {
    target = target.trim();
    for (let changed = true; changed; ) {
      changed = false;
      for (const p of DEPRECATED_PREFIXES) {
        if (target.startsWith(p)) {
          if (p === 'phy:') phy = true;
          target = target.slice(p.length);
          changed = true;
        }
      }
      const fm = /^([a-z0-9]+):/.exec(target);
      if (fm && isFormat(fm[1]!)) {
        prefixFormat = fm[1];
        target = target.slice(fm[0].length);
        changed = true;
      }
    }
  }
  if (prefixFormat !== undefined) set('format', prefixFormat);

  // vdev, possibly with the deprecated `:cdrom` / `:disk` suffix.
  if (f.vdev === undefined || f.vdev === '') fail('no vdev (the guest device name, e.g. xvda)');
  let vdev = f.vdev!;
  const suffix = /^(.*):(cdrom|disk)$/.exec(vdev);
  if (suffix) {
    vdev = suffix[1]!;
    set('devtype', suffix[2]!);
  }
  if (!VDEV_RE.test(vdev)) fail(`invalid vdev "${vdev}" (expected a name like xvda, hdc, sdb or vda)`);

  const devtype = f.devtype ?? 'disk';
  if (devtype !== 'disk' && devtype !== 'cdrom') fail(`unknown devtype "${devtype}" (disk or cdrom)`);

  const format = f.format === undefined || f.format === '' ? 'raw' : f.format;
  if (!isFormat(format)) fail(`unknown format "${format}" (${DISK_FORMATS.join(', ')})`);

  let access: 'ro' | 'rw' = devtype === 'cdrom' ? 'ro' : 'rw';
  if (f.access !== undefined && f.access !== '') {
    const a = Object.hasOwn(LEGACY_MODES, f.access) ? LEGACY_MODES[f.access] : undefined;
    if (!a) fail(`invalid access "${f.access}" (r, ro, w or rw)`);
    access = a!;
  }

  if (target === '') {
    if (devtype !== 'cdrom') fail('no target (the image file or block device)');
  } else if (/[\0\n]/.test(target)) {
    fail('the target contains a NUL or newline');
  } else if (!target.startsWith('/')) {
    if (phy) target = `/dev/${target}`;
    else if (opts.baseDir !== undefined) target = path.resolve(opts.baseDir, target);
    else fail(`the target "${target}" is not an absolute path`);
  }

  const disk: DiskSpec = { target, format, vdev, access, devtype };
  if (f.cache !== undefined) {
    if (!(CACHE_MODES as readonly string[]).includes(f.cache)) fail(`unknown cache mode "${f.cache}" (${CACHE_MODES.join(', ')})`);
    disk.cache = f.cache as CacheMode;
  }
  return disk;
}

/** The keyword spelling of a disk, which parseDiskSpec reads back to the same DiskSpec. */
export function formatDiskSpec(d: DiskSpec): string {
  const parts = [`format=${d.format}`, `vdev=${d.vdev}`, `access=${d.access}`];
  if (d.devtype !== 'disk') parts.push(`devtype=${d.devtype}`);
  if (d.cache !== undefined) parts.push(`cache=${d.cache}`);
  if (d.target !== '') parts.push(`target=${d.target}`);
  return parts.join(', ');
}
