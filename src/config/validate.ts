/**
 * The one validator of a domain config, whatever door it came in by: an xl.cfg file (after the
 * parser), a raw `config` object on the API, a save file's header, a migration's prepare, or a
 * runtime change (mem-set, mem-max, vcpu-set, network-attach). It checks the whole shape of an
 * unknown value (types, ranges, cross-field rules, charsets; unknown fields are refused) and
 * returns a fresh, normalised DomainConfig holding only known fields, so validate(validate(x))
 * equals validate(x). Pure: the filesystem checks (files exist, real paths) are the toolstack's.
 *
 * Errors are XenoError CONFIG_INVALID (INVALID_NAME for the name), 400, whose message starts with
 * the field: `vcpus: 100000000 is out of range (1 to 128...)`, `disks[0].vdev: ...`.
 */
import { isIP } from 'node:net';
import {
  BOOT_ORDER_RE,
  CACHE_MODES,
  DISK_FORMATS,
  LIFECYCLE_ACTIONS,
  effectiveCmdline,
  type DiskSpec,
  type DomainConfig,
  type VifSpec,
  type VncSpec,
} from '../model/domain-config.js';
import { normaliseCpuList } from './cpu-list.js';
import { VDEV_RE } from './disk-spec.js';
import {
  DEFAULT_MIN_GUEST_MEM,
  DOMAIN_NAME_CHARSET,
  HOSTNAME_RE,
  IFNAME_RE,
  MACHINE_TYPE_RE,
  MAC_RE,
  MAX_CMDLINE,
  MAX_DISKS,
  MAX_HA_PRIORITY,
  MAX_MEMORY_MIB,
  MAX_VCPUS,
  MAX_VIFS,
  NIC_MODELS,
  RESERVED_VIFNAMES,
  RESERVED_VIFNAME_PREFIXES,
  UUID_RE,
  fieldError,
  hostPath,
  int,
  matching,
  oneOf,
  show,
  str,
  type PathRules,
} from './validate-fields.js';
import { VIF_SCRIPTS, VIF_TYPES, parseRate, scriptBaseName } from './vif-spec.js';

export interface ValidateOptions extends PathRules {
  /** xeno-min-guest-mem: the least memory (MiB) a guest may be given. */
  minGuestMem?: number;
}

const CONFIG_KEYS = [
  'name', 'uuid', 'type', 'memory', 'maxmem', 'vcpus', 'maxvcpus', 'cpus', 'cpuModel', 'cpuWeight', 'cap', 'kernel', 'ramdisk',
  'root', 'extra', 'cmdline', 'hostname', 'bootloader', 'bootloaderArgs', 'disks', 'vifs', 'onPoweroff', 'onReboot', 'onCrash', 'restartLimit',
  'boot', 'vnc', 'ha', 'haRestartPriority', 'diskCache',
] as const satisfies ReadonlyArray<keyof DomainConfig>;
const DISK_KEYS = ['target', 'format', 'vdev', 'access', 'devtype', 'cache'] as const satisfies ReadonlyArray<keyof DiskSpec>;
const REQUIRED_DISK_KEYS = ['target', 'format', 'vdev', 'access', 'devtype'] as const;
const VIF_KEYS = [
  'devid', 'mac', 'bridge', 'ip', 'script', 'vifname', 'gatewaydev', 'rate', 'model', 'type', 'mtu',
] as const satisfies ReadonlyArray<keyof VifSpec>;

/** The object's own fields, refusing any not in `known` (undefined values count as absent). */
function record(field: string, v: unknown, known: readonly string[]): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw fieldError(field || 'config', `expected an object, got ${show(v)}`);
  const out: Record<string, unknown> = {};
  for (const [k, val] of Object.entries(v)) {
    const at = field ? `${field}.${k}` : k;
    if (!known.includes(k)) throw fieldError(at, `unknown field (known: ${known.join(', ')})`);
    if (val !== undefined) out[k] = val;
  }
  return out;
}

function list(field: string, v: unknown, max: number): unknown[] {
  if (!Array.isArray(v)) throw fieldError(field, `expected a list, got ${show(v)}`);
  if (v.length > max) throw fieldError(field, `${v.length} entries, at most ${max}`);
  return v;
}

/** A domain name: the charset, not all digits (it would read as an id), not the host's own. */
export function validateDomainName(v: unknown, field = 'name'): string {
  if (typeof v !== 'string') throw fieldError(field, `expected a string, got ${show(v)}`, 'INVALID_NAME');
  if (!DOMAIN_NAME_CHARSET.test(v)) throw fieldError(field, `invalid domain name ${show(v)}: use 1-64 characters of [A-Za-z0-9_.-]`, 'INVALID_NAME');
  if (/^\d+$/.test(v)) throw fieldError(field, `invalid domain name '${v}': all digits, it would read as a domain id`, 'INVALID_NAME');
  if (v === 'Domain-0') throw fieldError(field, `'Domain-0' is the host's own name`, 'INVALID_NAME');
  return v;
}

/** A QEMU machine type as a save file or a migration names it (it is put on QEMU's command line). */
export function validateMachineType(v: unknown, field = 'machineType'): string {
  return matching(field, v, MACHINE_TYPE_RE, 'a QEMU machine type name (1-64 characters of A-Z a-z 0-9 _ . -)');
}

function cmdlinePart(field: string, v: unknown): string {
  return str(field, v, MAX_CMDLINE);
}

function validateDisk(field: string, v: unknown, rules: PathRules): DiskSpec {
  const d = record(field, v, DISK_KEYS);
  for (const k of REQUIRED_DISK_KEYS) if (d[k] === undefined) throw fieldError(`${field}.${k}`, 'missing');
  const devtype = oneOf(`${field}.devtype`, d.devtype, ['disk', 'cdrom'] as const);
  const vdev = matching(`${field}.vdev`, d.vdev, VDEV_RE, 'a guest disk name like xvda, hdc, sdb or vda', 16);
  const format = oneOf(`${field}.format`, d.format, DISK_FORMATS);
  const access = oneOf(`${field}.access`, d.access, ['ro', 'rw'] as const);
  let target = str(`${field}.target`, d.target, 4096);
  if (target === '') {
    if (devtype !== 'cdrom') throw fieldError(`${field}.target`, 'empty (only an empty cdrom drive has no target)');
  } else {
    target = hostPath(`${field}.target`, target, rules);
  }
  const disk: DiskSpec = { target, format, vdev, access, devtype };
  if (d.cache !== undefined) disk.cache = oneOf(`${field}.cache`, d.cache, CACHE_MODES);
  return disk;
}

function validateVif(field: string, v: unknown): VifSpec {
  const r = record(field, v, VIF_KEYS);
  const f = (k: string) => `${field}.${k}`;
  const vif: VifSpec = { devid: int(f('devid'), r.devid, 0, 255) };
  if (r.mac !== undefined) {
    const mac = matching(f('mac'), r.mac, MAC_RE, 'a MAC address of six hex octets like 00:16:3e:12:34:56', 17).toLowerCase();
    if (parseInt(mac.slice(0, 2), 16) & 1) throw fieldError(f('mac'), `${mac} is a multicast address`);
    vif.mac = mac;
  }
  for (const k of ['bridge', 'gatewaydev'] as const) {
    if (r[k] !== undefined) vif[k] = matching(f(k), r[k], IFNAME_RE, 'an interface name (1-15 characters of A-Z a-z 0-9 _ . -)', 15);
  }
  if (r.vifname !== undefined) {
    const n = matching(f('vifname'), r.vifname, IFNAME_RE, 'an interface name (1-15 characters of A-Z a-z 0-9 _ . -)', 15);
    if (!/^[A-Za-z]/.test(n)) throw fieldError(f('vifname'), `${show(n)} must start with a letter (it names the vif's nftables chain)`);
    if (RESERVED_VIFNAMES.includes(n) || RESERVED_VIFNAME_PREFIXES.some((p) => n.startsWith(p))) {
      throw fieldError(f('vifname'), `${show(n)} is reserved by xeno's firewall chains`);
    }
    vif.vifname = n;
  }
  if (r.ip !== undefined) {
    const ips = str(f('ip'), r.ip, 512).split(' ').filter(Boolean);
    if (ips.length === 0 || ips.length > 8) throw fieldError(f('ip'), `expected 1 to 8 addresses separated by spaces, got ${show(r.ip)}`);
    for (const ip of ips) if (isIP(ip) === 0) throw fieldError(f('ip'), `${show(ip)} is not an IP address`);
    vif.ip = ips.join(' ');
  }
  if (r.script !== undefined) {
    const s = str(f('script'), r.script, 256);
    const base = scriptBaseName(s);
    if (!(VIF_SCRIPTS as readonly string[]).includes(base) || !(s === base || /^\/[A-Za-z0-9_./-]+$/.test(s))) {
      throw fieldError(f('script'), `${show(s)} is not one of ${VIF_SCRIPTS.join(', ')}`);
    }
    vif.script = base;
  }
  if (r.rate !== undefined) {
    const rate = str(f('rate'), r.rate, 64);
    try {
      parseRate(rate);
    } catch (e) {
      throw fieldError(f('rate'), (e as Error).message);
    }
    vif.rate = rate;
  }
  if (r.model !== undefined) vif.model = oneOf(f('model'), r.model, NIC_MODELS);
  if (r.type !== undefined) vif.type = oneOf(f('type'), r.type, VIF_TYPES);
  if (r.mtu !== undefined) vif.mtu = int(f('mtu'), r.mtu, 68, 65535);
  return vif;
}

const VNC_KEYS = ['listen', 'display', 'password'] as const satisfies ReadonlyArray<keyof VncSpec>;

/** True for 127.0.0.0/8 and ::1: a VNC display there is reachable from this host only. */
export function isLoopback(ip: string): boolean {
  return /^127\./.test(ip) || ip === '::1';
}

export function validateVnc(field: string, v: unknown): VncSpec {
  const r = record(field, v, VNC_KEYS);
  const listen = str(`${field}.listen`, r.listen ?? '127.0.0.1', 64);
  if (isIP(listen) === 0) throw fieldError(`${field}.listen`, `${show(listen)} is not an IP address`);
  const vnc: VncSpec = { listen };
  if (r.display !== undefined) vnc.display = int(`${field}.display`, r.display, 0, 99);
  if (r.password !== undefined) {
    // (never echoed in the message: it is a secret)
    if (typeof r.password !== 'string' || !/^[\x21-\x7e]{1,8}$/.test(r.password)) {
      throw fieldError(`${field}.password`, 'must be 1 to 8 printable characters without spaces (VNC authentication uses at most 8)');
    }
    vnc.password = r.password;
  }
  if (vnc.password === undefined && !isLoopback(listen)) {
    throw fieldError(`${field}.password`, `a VNC display listening on ${listen} (beyond this host) needs a password (vncpasswd)`);
  }
  return vnc;
}

/** Refuses two entries sharing a value (vdev, devid, mac, vifname). */
function unique<T>(items: T[], field: string, key: (t: T) => string | number | undefined, what: string): void {
  const seen = new Map<string | number, number>();
  items.forEach((t, i) => {
    const k = key(t);
    if (k === undefined) return;
    const prev = seen.get(k);
    if (prev !== undefined) throw fieldError(`${field}[${i}].${what}`, `${show(k)} is already used by ${field}[${prev}]`);
    seen.set(k, i);
  });
}

/**
 * Validates a whole domain config of unknown origin and returns it normalised (see the module
 * comment). Throws XenoError (4xx) naming the first bad field.
 */
export function validateDomainConfig(raw: unknown, opts: ValidateOptions = {}): DomainConfig {
  const r = record('', raw, CONFIG_KEYS);
  for (const k of ['name', 'type', 'memory', 'maxmem', 'vcpus', 'maxvcpus', 'disks', 'vifs', 'onPoweroff', 'onReboot', 'onCrash'] as const) {
    if (r[k] === undefined) throw fieldError(k, 'missing');
  }
  const name = validateDomainName(r.name);
  const type = oneOf('type', r.type, ['pv', 'pvh', 'hvm'] as const);

  const floor = opts.minGuestMem ?? DEFAULT_MIN_GUEST_MEM;
  const maxmem = int('maxmem', r.maxmem, 1, MAX_MEMORY_MIB, ' MiB');
  const memory = int('memory', r.memory, 0, MAX_MEMORY_MIB, ' MiB');
  if (memory < floor) throw fieldError('memory', `${memory} MiB is below the ${floor} MiB floor a guest needs (xeno-min-guest-mem)`);
  if (memory > maxmem) throw fieldError('memory', `${memory} MiB is above its maxmem of ${maxmem} MiB`);

  const maxvcpus = int('maxvcpus', r.maxvcpus, 1, MAX_VCPUS, `, xeno's limit`);
  const vcpus = int('vcpus', r.vcpus, 1, MAX_VCPUS, `, xeno's limit`);
  if (vcpus > maxvcpus) throw fieldError('vcpus', `${vcpus} is above its maxvcpus of ${maxvcpus}`);

  const rules: PathRules = { protectedPaths: opts.protectedPaths };
  const disks = list('disks', r.disks, MAX_DISKS).map((d, i) => validateDisk(`disks[${i}]`, d, rules));
  unique(disks, 'disks', (d) => d.vdev, 'vdev');
  const vifs = list('vifs', r.vifs, MAX_VIFS).map((v, i) => validateVif(`vifs[${i}]`, v));
  unique(vifs, 'vifs', (v) => v.devid, 'devid');
  unique(vifs, 'vifs', (v) => v.mac, 'mac');
  unique(vifs, 'vifs', (v) => v.vifname, 'vifname');

  const c: DomainConfig = {
    name, type, memory, maxmem, vcpus, maxvcpus, disks, vifs,
    onPoweroff: oneOf('onPoweroff', r.onPoweroff, LIFECYCLE_ACTIONS),
    onReboot: oneOf('onReboot', r.onReboot, LIFECYCLE_ACTIONS),
    onCrash: oneOf('onCrash', r.onCrash, LIFECYCLE_ACTIONS),
  };
  if (r.uuid !== undefined) c.uuid = matching('uuid', r.uuid, UUID_RE, 'a uuid (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)', 36).toLowerCase();
  if (r.cpus !== undefined) {
    const cpus = matching('cpus', r.cpus, /^[0-9,^ -]+$|^all$/, 'a CPU list like 0-3,^1 or all', 256);
    try {
      if (normaliseCpuList(cpus) !== 'all') c.cpus = cpus;
    } catch (e) {
      throw fieldError('cpus', (e as Error).message);
    }
  }
  if (r.cpuModel !== undefined) c.cpuModel = matching('cpuModel', r.cpuModel, /^[A-Za-z][A-Za-z0-9_.-]*$/, 'a QEMU CPU model name (e.g. Haswell-noTSX)', 64);
  if (r.cpuWeight !== undefined) c.cpuWeight = int('cpuWeight', r.cpuWeight, 1, 65535);
  if (r.cap !== undefined) c.cap = int('cap', r.cap, 0, 100 * maxvcpus, ' = 100 per vcpu');
  if (r.restartLimit !== undefined) c.restartLimit = int('restartLimit', r.restartLimit, 0, 100_000);
  if (r.ha !== undefined) {
    if (typeof r.ha !== 'boolean') throw fieldError('ha', `expected true or false, got ${show(r.ha)}`);
    if (r.ha) c.ha = true;
  }
  if (r.haRestartPriority !== undefined) {
    const p = int('haRestartPriority', r.haRestartPriority, 0, MAX_HA_PRIORITY);
    if (!c.ha) throw fieldError('haRestartPriority', 'is only meaningful with ha = 1');
    if (p !== 0) c.haRestartPriority = p;
  }
  if (r.kernel !== undefined) c.kernel = hostPath('kernel', r.kernel, rules);
  if (r.ramdisk !== undefined) c.ramdisk = hostPath('ramdisk', r.ramdisk, rules);
  for (const k of ['root', 'extra', 'cmdline'] as const) if (r[k] !== undefined) c[k] = cmdlinePart(k, r[k]);
  if ((effectiveCmdline(c) ?? '').length > MAX_CMDLINE) throw fieldError('cmdline', `the kernel command line is longer than ${MAX_CMDLINE} characters`);
  if (r.hostname !== undefined) c.hostname = matching('hostname', r.hostname, HOSTNAME_RE, 'a host name (labels of A-Z a-z 0-9 -)', 253);

  if (r.boot !== undefined) c.boot = matching('boot', r.boot, BOOT_ORDER_RE, 'Xen boot letters: c (disk), d (cdrom), n (network), each at most once', 3);
  if (r.vnc !== undefined) c.vnc = validateVnc('vnc', r.vnc);
  if (r.diskCache !== undefined) c.diskCache = oneOf('diskCache', r.diskCache, CACHE_MODES);

  if (r.bootloader !== undefined) c.bootloader = oneOf('bootloader', r.bootloader, ['pygrub'] as const);
  if (r.bootloaderArgs !== undefined) {
    c.bootloaderArgs = list('bootloaderArgs', r.bootloaderArgs, 16).map((a, i) => str(`bootloaderArgs[${i}]`, a, MAX_CMDLINE));
    if (!c.bootloader) throw fieldError('bootloaderArgs', 'set without a bootloader');
  }

  if (type !== 'hvm' && c.kernel === undefined && !c.bootloader) throw fieldError('kernel', `a ${type} domain needs a kernel or bootloader = "pygrub"`);
  if (type === 'hvm' && c.kernel === undefined && disks.length === 0) throw fieldError('disks', 'an hvm domain needs a disk to boot from');
  return c;
}
