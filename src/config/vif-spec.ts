/**
 * Network interface specifications (xl-network-configuration(5)): comma-separated `key=value`
 * settings; `''` is a valid vif with every default. Errors are XenoError('CONFIG_INVALID') naming
 * the spec; callers add file:line:col.
 */

import { isIP } from 'node:net';
import { XenoError } from '../common/errors.js';
import type { VifSpec } from '../model/domain-config.js';
import { IFNAME_RE, MAC_RE } from './validate-fields.js';

export const VIF_SCRIPTS = ['vif-bridge', 'vif-nat', 'vif-route'] as const;
export const VIF_TYPES = ['ioemu', 'vif', 'netfront'] as const;

const MODEL_RE = /^[A-Za-z0-9_.-]{1,32}$/;

/** Default interval over which the rate's credit is replenished (xl: 50 ms). */
export const DEFAULT_RATE_INTERVAL_US = 50_000;

const RATE_UNITS: Record<string, number> = {
  B: 1,
  b: 1 / 8,
  KB: 1e3,
  Kb: 1e3 / 8,
  MB: 1e6,
  Mb: 1e6 / 8,
  GB: 1e9,
  Gb: 1e9 / 8,
};
const INTERVAL_UNITS: Record<string, number> = { s: 1_000_000, ms: 1_000, us: 1 };

function invalid(msg: string): XenoError {
  return new XenoError('CONFIG_INVALID', msg);
}

/**
 * Parses an xl rate, `<num><unit>/s[@<num><s|ms|us>]`, units B b KB Kb MB Mb GB Gb (decimal
 * multiples; lower-case b = bits). `10Mb/s` = 1250000 bytes/s over 50 ms; `1MB/s@20ms`.
 */
export function parseRate(rate: string): { bytesPerSec: number; intervalUs: number } {
  const m = /^(\d+)(B|b|KB|Kb|MB|Mb|GB|Gb)\/s(?:@(\d+)(s|ms|us))?$/.exec(rate.trim());
  if (!m) {
    throw invalid(
      `invalid rate "${rate}" (expected <number><unit>/s[@<number><s|ms|us>], units B b KB Kb MB Mb GB Gb, e.g. 10Mb/s or 1MB/s@20ms)`,
    );
  }
  const bytesPerSec = Math.floor(Number(m[1]) * RATE_UNITS[m[2]!]!);
  if (bytesPerSec < 1) throw invalid(`invalid rate "${rate}": less than one byte per second`);
  if (!Number.isSafeInteger(bytesPerSec)) throw invalid(`invalid rate "${rate}": too large`);
  let intervalUs = DEFAULT_RATE_INTERVAL_US;
  if (m[3] !== undefined) {
    intervalUs = Number(m[3]) * INTERVAL_UNITS[m[4]!]!;
    if (intervalUs < 1) throw invalid(`invalid rate "${rate}": the interval must not be zero`);
    if (intervalUs > 3_600_000_000) throw invalid(`invalid rate "${rate}": the interval is longer than an hour`);
  }
  return { bytesPerSec, intervalUs };
}

/** `/etc/xen/scripts/vif-nat` -> `vif-nat`. */
export function scriptBaseName(script: string): string {
  const s = script.trim();
  return s.slice(s.lastIndexOf('/') + 1);
}

export function parseVifSpec(spec: string, devid: number): VifSpec {
  function fail(why: string): never {
    throw invalid(`invalid vif "${spec}": ${why}`);
  }
  const vif: VifSpec = { devid };
  for (const raw of spec.split(',')) {
    const part = raw.trim();
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (eq < 0) fail(`"${part}" is not key=value`);
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    switch (key) {
      case 'mac': {
        if (!MAC_RE.test(value)) fail(`invalid mac "${value}" (expected six hex octets like 00:16:3e:12:34:56)`);
        if (parseInt(value.slice(0, 2), 16) & 1) fail(`mac "${value}" is a multicast address`);
        vif.mac = value.toLowerCase();
        break;
      }
      case 'bridge':
      case 'vifname':
      case 'gatewaydev':
        if (!IFNAME_RE.test(value)) fail(`invalid ${key} "${value}" (an interface name of 1-15 characters)`);
        vif[key] = value;
        break;
      case 'ip': {
        const ips = value.split(/\s+/).filter(Boolean);
        if (ips.length === 0) fail('ip is empty');
        for (const ip of ips) if (isIP(ip) === 0) fail(`invalid ip address "${ip}"`);
        vif.ip = ips.join(' ');
        break;
      }
      case 'script': {
        const name = scriptBaseName(value);
        if (!(VIF_SCRIPTS as readonly string[]).includes(name)) {
          fail(`unknown script "${value}" (${VIF_SCRIPTS.join(', ')})`);
        }
        vif.script = name;
        break;
      }
      case 'rate':
        try {
          parseRate(value);
        } catch (e) {
          fail((e as Error).message);
        }
        vif.rate = value;
        break;
      case 'model':
        if (!MODEL_RE.test(value)) fail(`invalid model "${value}"`);
        vif.model = value;
        break;
      case 'type':
        if (!(VIF_TYPES as readonly string[]).includes(value)) fail(`unknown type "${value}" (${VIF_TYPES.join(', ')})`);
        vif.type = value;
        break;
      case 'mtu': {
        if (!/^\d+$/.test(value)) fail(`mtu "${value}" is not an integer`);
        const mtu = Number(value);
        if (mtu < 68 || mtu > 65535) fail(`mtu ${mtu} is out of range (68-65535)`);
        vif.mtu = mtu;
        break;
      }
      default:
        fail(
          `unknown key "${key}" (expected mac, bridge, ip, script, vifname, gatewaydev, rate, model, type, mtu)`,
        );
    }
  }
  return vif;
}

/** The key=value spelling of a vif, which parseVifSpec reads back to the same VifSpec. */
export function formatVifSpec(v: VifSpec): string {
  const parts: string[] = [];
  if (v.mac !== undefined) parts.push(`mac=${v.mac}`);
  if (v.bridge !== undefined) parts.push(`bridge=${v.bridge}`);
  if (v.ip !== undefined) parts.push(`ip=${v.ip}`);
  if (v.script !== undefined) parts.push(`script=${v.script}`);
  if (v.vifname !== undefined) parts.push(`vifname=${v.vifname}`);
  if (v.gatewaydev !== undefined) parts.push(`gatewaydev=${v.gatewaydev}`);
  if (v.rate !== undefined) parts.push(`rate=${v.rate}`);
  if (v.model !== undefined) parts.push(`model=${v.model}`);
  if (v.type !== undefined) parts.push(`type=${v.type}`);
  if (v.mtu !== undefined) parts.push(`mtu=${v.mtu}`);
  return parts.join(', ');
}
