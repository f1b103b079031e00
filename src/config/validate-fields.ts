/**
 * The field rules of the domain config validator (validate.ts): limits, charsets and the checks
 * of one value. Pure. Every value that reaches a QEMU option string, an nftables rule, a dnsmasq
 * line, a tc argument or a path is held to a whitelist here, so no comma, newline or control
 * character gets through whatever door it came in by.
 */
import { posix as path } from 'node:path';
import { XenoError, type ErrorCode } from '../common/errors.js';

/**
 * The most vcpus a guest may have (vcpus and maxvcpus). QEMU's pc machine allows 255, but every
 * vcpu is a host thread and a `-device` on the command line: 128 keeps a typo from taking the
 * host down (README, "Limits").
 */
export const MAX_VCPUS = 128;
/** A sanity bound on memory and maxmem (MiB, 1 PiB); the host's free memory decides below it. */
export const MAX_MEMORY_MIB = 1024 * 1024 * 1024;
/** Disks and vifs each take a PCI slot of the 32 the pc machine has (a few are QEMU's own). */
export const MAX_DISKS = 16;
export const MAX_VIFS = 8;
/** ha_restart_priority's range: higher restarts first after a host failure. */
export const MAX_HA_PRIORITY = 1000;
/** Linux's x86 COMMAND_LINE_SIZE is 2048; xeno appends console=, hostname and network arguments. */
export const MAX_CMDLINE = 1536;
export const MAX_PATH = 4096;
/** The default of xeno-min-guest-mem (MiB), when a caller gives none. */
export const DEFAULT_MIN_GUEST_MEM = 64;
/** Nesting of lists in an xl.cfg file (xl's own configs nest at most 2 levels). */
export const MAX_XLCFG_NESTING = 32;

export const DOMAIN_NAME_CHARSET = /^[A-Za-z0-9_.-]{1,64}$/;
export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const HOSTNAME_RE =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
export const MAC_RE = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/i;
/** Linux interface names: 1-15 characters, no slash, colon or whitespace. */
export const IFNAME_RE = /^[A-Za-z0-9_.-]{1,15}$/;
/** Paths: no comma (QEMU option strings), no control character, nothing a shell or QEMU reads specially. */
export const PATH_CHARSET = /^\/[A-Za-z0-9_.+@%=~:/ -]*$/;
/** A QEMU machine type name (`pc-i440fx-7.2`). */
export const MACHINE_TYPE_RE = /^[A-Za-z0-9_.-]{1,64}$/;
/** xl's model= names and the QEMU NIC devices a vif may be (the argv builder uses them as a driver name). */
export const NIC_MODELS = [
  'virtio', 'virtio-net', 'netfront', 'virtio-net-pci', 'e1000', 'e1000e', 'rtl8139', 'ne2k_pci', 'pcnet',
  'i82551', 'i82557b', 'i82559er', 'vmxnet3',
] as const;
/** Chain names xeno's firewall uses itself (host/network/firewall.ts): a vifname may not be one. */
export const RESERVED_VIFNAMES = ['forward', 'input', 'output', 'postrouting'];
export const RESERVED_VIFNAME_PREFIXES = ['from_', 'to_', 'in_', 'arp_'];

/** Where a value sits: `memory`, `disks[0].vdev`; messages start with it. */
export class FieldError extends XenoError {
  constructor(code: ErrorCode, field: string, why: string) {
    super(code, `${field}: ${why}`, { field });
  }
}

export function fieldError(field: string, why: string, code: ErrorCode = 'CONFIG_INVALID'): FieldError {
  return new FieldError(code, field, why);
}

/** A short, safe rendering of a bad value for a message (no control characters echoed raw). */
export function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 80 ? `${v.slice(0, 80)}...` : v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  return Array.isArray(v) ? 'a list' : `a ${typeof v}`;
}

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

export function hasControl(s: string): boolean {
  return CONTROL.test(s);
}

export function str(field: string, v: unknown, max = 256): string {
  if (typeof v !== 'string') throw fieldError(field, `expected a string, got ${show(v)}`);
  if (hasControl(v)) throw fieldError(field, `${show(v)} contains a control character (newline, tab...)`);
  if (v.length > max) throw fieldError(field, `is longer than ${max} characters`);
  return v;
}

export function int(field: string, v: unknown, min: number, max: number, why = ''): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw fieldError(field, `expected an integer, got ${show(v)}`);
  if (v < min || v > max) throw fieldError(field, `${v} is out of range (${min} to ${max}${why})`);
  return v;
}

export function oneOf<T extends string>(field: string, v: unknown, allowed: readonly T[]): T {
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    throw fieldError(field, `${show(v)} is not one of ${allowed.join(', ')}`);
  }
  return v as T;
}

export function matching(field: string, v: unknown, re: RegExp, what: string, max = 256): string {
  const s = str(field, v, max);
  if (!re.test(s)) throw fieldError(field, `${show(s)} is not ${what}`);
  return s;
}

export interface PathRules {
  /** Paths no guest file may be or be under (xenod's state dir, its key file...). */
  protectedPaths?: readonly string[];
}

/** Whether `p` is `base` or inside it (both absolute and normalised). */
export function within(p: string, base: string): boolean {
  const b = base.endsWith('/') ? base : `${base}/`;
  return p === base || p.startsWith(b) || b === '/';
}

/** An absolute, normalised path of safe characters that is not one of xenod's own files. */
export function hostPath(field: string, v: unknown, rules: PathRules): string {
  const s = str(field, v, MAX_PATH);
  if (!s.startsWith('/')) throw fieldError(field, `${show(s)} is not an absolute path`);
  if (s.includes(',')) throw fieldError(field, `${show(s)} contains a comma, which QEMU option strings cannot carry safely: rename the file`);
  if (!PATH_CHARSET.test(s)) throw fieldError(field, `${show(s)} has characters outside A-Z a-z 0-9 _ . + @ % = ~ : / - and space`);
  const norm = path.resolve(s);
  for (const p of rules.protectedPaths ?? []) {
    if (within(norm, path.resolve(p))) throw fieldError(field, `${norm} is xenod's own state (${p}): a guest may not use it`);
  }
  return norm;
}
