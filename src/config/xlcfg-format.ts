/**
 * DomainConfig -> xl.cfg text. The output parses back to the same DomainConfig:
 * toDomainConfig(parseXlCfg(formatXlCfg(c))) deep-equals c (for vifs whose devid is their index).
 */

import type { DomainConfig } from '../model/domain-config.js';
import { formatDiskSpec } from './disk-spec.js';
import { formatVifSpec } from './vif-spec.js';

/** A double-quoted xl.cfg string literal. */
export function quoteXlString(s: string): string {
  let out = '"';
  for (const ch of s) {
    switch (ch) {
      case '\\':
        out += '\\\\';
        break;
      case '"':
        out += '\\"';
        break;
      case '\n':
        out += '\\n';
        break;
      case '\t':
        out += '\\t';
        break;
      case '\r':
        out += '\\r';
        break;
      default: {
        const code = ch.charCodeAt(0);
        out += code < 0x20 || code === 0x7f ? `\\x${code.toString(16).padStart(2, '0')}` : ch;
      }
    }
  }
  return out + '"';
}

function list(items: string[]): string {
  if (items.length === 0) return '[ ]';
  return `[\n${items.map((i) => `    ${quoteXlString(i)},`).join('\n')}\n]`;
}

export function formatXlCfg(c: DomainConfig): string {
  const lines: string[] = [
    `# xl.cfg(5) configuration of domain ${c.name}, written by xeno.`,
    '# Create the domain with: xeno create <this file>',
    '',
  ];
  const str = (key: string, v: string | undefined): void => {
    if (v !== undefined) lines.push(`${key} = ${quoteXlString(v)}`);
  };
  const num = (key: string, v: number | undefined): void => {
    if (v !== undefined) lines.push(`${key} = ${v}`);
  };

  str('name', c.name);
  str('uuid', c.uuid);
  str('type', c.type);
  lines.push('');
  num('memory', c.memory);
  num('maxmem', c.maxmem);
  num('vcpus', c.vcpus);
  num('maxvcpus', c.maxvcpus);
  str('cpus', c.cpus);
  num('cpu_weight', c.cpuWeight);
  num('cap', c.cap);
  if (c.kernel !== undefined || c.ramdisk !== undefined || c.root !== undefined || c.extra !== undefined || c.cmdline !== undefined) {
    lines.push('');
  }
  str('kernel', c.kernel);
  str('ramdisk', c.ramdisk);
  str('root', c.root);
  str('extra', c.extra);
  str('cmdline', c.cmdline);
  str('hostname', c.hostname);
  str('bootloader', c.bootloader);
  if (c.bootloaderArgs?.length) lines.push(`bootloader_args = ${list(c.bootloaderArgs)}`);
  lines.push('');
  str('on_poweroff', c.onPoweroff);
  str('on_reboot', c.onReboot);
  str('on_crash', c.onCrash);
  num('restart_limit', c.restartLimit);
  if (c.ha) num('ha', 1);
  num('ha_restart_priority', c.haRestartPriority);
  str('boot', c.boot);
  str('disk_cache', c.diskCache);
  if (c.vnc) {
    num('vnc', 1);
    str('vnclisten', c.vnc.listen);
    num('vncdisplay', c.vnc.display);
    str('vncpasswd', c.vnc.password);
  }
  lines.push('');
  lines.push(`disk = ${list(c.disks.map(formatDiskSpec))}`);
  lines.push(`vif = ${list(c.vifs.map(formatVifSpec))}`);
  return lines.join('\n') + '\n';
}
