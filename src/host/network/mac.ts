/**
 * Guest MAC addresses. Xen's OUI is 00:16:3e; xl draws the last three octets at random with the
 * top bit of the fourth cleared. xeno derives them from a hash of (domain name, devid) instead, so
 * a guest keeps its MAC across restarts, saves and migrations (and keeps its DHCP lease).
 */
import { createHash } from 'node:crypto';

export const XEN_OUI = '00:16:3e';

export function defaultMac(domainName: string, devid: number): string {
  const h = createHash('sha256').update(`xeno-vif\0${domainName}\0${devid}`).digest();
  const octets = [h[0]! & 0x7f, h[1]!, h[2]!];
  return `${XEN_OUI}:${octets.map((o) => o.toString(16).padStart(2, '0')).join(':')}`;
}

/** The MAC a vif gets: its own `mac=` when set, else the stable default. */
export function vifMac(domainName: string, devid: number, mac?: string): string {
  return (mac ?? defaultMac(domainName, devid)).toLowerCase();
}
