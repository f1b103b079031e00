/** IPv4 arithmetic on plain numbers (no I/O): subnets, containment, the NAT pool's /30 slots. */
import { isIPv4 } from 'node:net';
import { XenoError } from '../../common/errors.js';

export function ipToInt(ip: string): number {
  if (!isIPv4(ip)) throw new XenoError('BAD_REQUEST', `"${ip}" is not an IPv4 address`);
  return ip.split('.').reduce((a, o) => a * 256 + Number(o), 0);
}

export function intToIp(n: number): string {
  return [24, 16, 8, 0].map((sh) => Math.floor(n / 2 ** sh) % 256).join('.');
}

export interface Cidr {
  /** Network address as a number. */
  net: number;
  prefix: number;
}

export function parseCidr4(s: string): Cidr {
  const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d{1,2})$/.exec(s.trim());
  if (!m || Number(m[2]) > 32) throw new XenoError('BAD_REQUEST', `"${s}" is not an IPv4 subnet (a.b.c.d/n)`);
  const prefix = Number(m[2]);
  return { net: networkOf(ipToInt(m[1]!), prefix), prefix };
}

export function networkOf(addr: number, prefix: number): number {
  const size = 2 ** (32 - prefix);
  return addr - (addr % size);
}

export function contains(c: Cidr, addr: number): boolean {
  return networkOf(addr, c.prefix) === c.net;
}

export function cidrString(c: Cidr): string {
  return `${intToIp(c.net)}/${c.prefix}`;
}

export function netmask(prefix: number): string {
  return intToIp(prefix === 0 ? 0 : 2 ** 32 - 2 ** (32 - prefix));
}

/**
 * The NAT pool is cut into /30 slots: network, host side (.1), guest (.2), broadcast. Slot k of a
 * pool starts at pool.net + 4k; the pool's first slot is kept unused so the pool's own network
 * address is never a vif's.
 */
export interface NatSlot {
  index: number;
  network: string;
  host: string;
  guest: string;
  prefix: 30;
}

export function slotCount(pool: Cidr): number {
  return 2 ** (32 - pool.prefix) / 4;
}

export function natSlot(pool: Cidr, index: number): NatSlot {
  if (index < 1 || index >= slotCount(pool)) throw new XenoError('HOST_ERROR', `NAT slot ${index} is outside ${cidrString(pool)}`);
  const base = pool.net + 4 * index;
  return { index, network: intToIp(base), host: intToIp(base + 1), guest: intToIp(base + 2), prefix: 30 };
}

/**
 * The slot a guest's own `ip=` falls in; the host side takes the other usable address of the /30.
 * undefined when the address is outside the pool; an error for a /30's network or broadcast address.
 */
export function slotForGuestIp(pool: Cidr, ip: string): NatSlot | undefined {
  const a = ipToInt(ip);
  if (!contains(pool, a)) return undefined;
  const index = (a - pool.net) >>> 2;
  const off = (a - pool.net) % 4;
  if (index === 0 || off === 0 || off === 3) {
    throw new XenoError(
      'CONFIG_INVALID',
      `ip=${ip} cannot be a NAT guest's address: the pool ${cidrString(pool)} is cut into /30s and ${ip} is a network or broadcast address or in the reserved first /30`,
    );
  }
  const base = pool.net + 4 * index;
  return off === 2
    ? { index, network: intToIp(base), host: intToIp(base + 1), guest: ip, prefix: 30 }
    : { index, network: intToIp(base), host: intToIp(base + 2), guest: ip, prefix: 30 };
}
