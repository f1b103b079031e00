/**
 * Warnings about what a valid config will not do as a Xen user expects, for the create output
 * (beside the parser's per-key warnings): disk names the guest sees differently, a bridge= that
 * the vif's mode does not use. Pure.
 */
import { effectiveCmdline, type DomainConfig } from '../model/domain-config.js';
import { diskNameWarnings } from './disk-order.js';
import { scriptBaseName } from './vif-spec.js';

export function effectWarnings(c: DomainConfig, defaultVifScript: string): string[] {
  const out = diskNameWarnings(c, c.kernel !== undefined ? effectiveCmdline(c) : undefined);
  for (const v of c.vifs) {
    const script = scriptBaseName(v.script ?? defaultVifScript);
    if (v.bridge !== undefined && script !== 'vif-bridge') {
      out.push(`warning: vif ${v.devid}: bridge=${v.bridge} has no effect: the vif uses ${script}, which routes the guest instead of bridging it`);
    }
  }
  if (c.type !== 'hvm' && c.disks.some((d) => d.devtype === 'cdrom')) {
    out.push('warning: a cdrom of a pv guest appears as an IDE cdrom (/dev/sr0), not as a Xen virtual disk');
  }
  return out;
}
