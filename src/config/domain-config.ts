/**
 * From the parsed xl.cfg / xm file to the normalised DomainConfig: types checked, defaults filled,
 * cross-key constraints enforced, disks and vifs parsed. Every error is
 * XenoError('CONFIG_INVALID', `${file}:${line}:${col}: ...`) pointing at the offending value.
 *
 * The only I/O is parseDomainConfigFile()'s call of readConfigFile() (read-file.ts).
 */

import { posix as path } from 'node:path';
import { XenoError } from '../common/errors.js';
import {
  BOOT_ORDER_RE,
  CACHE_MODES,
  DOMAIN_NAME_RE,
  LIFECYCLE_ACTIONS,
  type CacheMode,
  type DiskSpec,
  type DomainConfig,
  type LifecycleAction,
  type VifSpec,
  type VmType,
  type VncSpec,
} from '../model/domain-config.js';
import { validateVnc } from './validate.js';
import { normaliseCpuList } from './cpu-list.js';
import { parseDiskSpec } from './disk-spec.js';
import { parseMemSize } from './sizes.js';
import { MANAGED_KEYS } from './managed-keys.js';
import { readConfigFile } from './read-file.js';
import { HOSTNAME_RE, MAX_HA_PRIORITY, MAX_VCPUS, UUID_RE } from './validate-fields.js';
import { parseVifSpec } from './vif-spec.js';
import { parseXlCfg, type XlCfgAst, type XlEntry, type XlPos, type XlValue } from './xlcfg-parser.js';

export type Warn = (msg: string) => void;

export interface DomainConfigOptions {
  /**
   * Directory relative kernel, ramdisk and disk paths are resolved against (xl uses its working
   * directory). Without it, relative paths are errors.
   */
  baseDir?: string;
}

export { MAX_VCPUS } from './validate-fields.js';
export const DEFAULT_MEMORY_MIB = 128;

/** Keys the display code below reads (hvm boot order, VNC, SDL, serial). */
const DISPLAY_KEYS = ['boot', 'vnc', 'vnclisten', 'vncdisplay', 'vncpasswd', 'vfb', 'sdl', 'serial'] as const;

/** Keys this module understands. */
export const KNOWN_KEYS = [
  'name', 'uuid', 'type', 'builder', 'memory', 'maxmem', 'vcpus', 'maxvcpus', 'cpus', 'cpu_weight', 'cap',
  'kernel', 'ramdisk', 'root', 'extra', 'cmdline', 'hostname', 'disk', 'vif',
  'bootloader', 'bootloader_args', 'on_poweroff', 'on_reboot', 'on_crash', 'restart_limit', 'ha', 'ha_restart_priority', 'disk_cache', ...DISPLAY_KEYS,
] as const;

/** Keys xm/xl files often carry that have no effect here: accepted, with one warning saying why. */
export const NO_EFFECT_KEYS: Record<string, string> = {
  acpi: "QEMU's pc machine always has ACPI",
  apic: "QEMU's pc machine always has an APIC",
  pae: 'the vcpus are 64-bit (PAE included)',
  hap: 'paging is whatever the accelerator does (TCG or KVM)',
  xen_platform_pci: 'there is no Xen platform device: disks and NICs are virtio',
  device_model: 'the device model is always xenod\'s QEMU',
  device_model_version: 'the device model is always xenod\'s QEMU',
  device_model_override: 'the device model is always xenod\'s QEMU',
  on_xend_start: 'xenod re-adopts running guests and never starts others by itself',
  on_xend_stop: 'xenod stopping leaves guests running (or saves them, per its own config)',
  shadow_memory: 'there is no shadow paging here',
  videoram: 'the VGA of a vnc display has QEMU\'s default video memory',
  vncunused: 'without vncdisplay the first free display from :0 is used anyway',
  usb: 'no USB controller is given to the guest',
  usbdevice: 'no USB controller is given to the guest',
  localtime: 'the guest clock is UTC',
  stdvga: 'a vnc display always has the standard VGA',
  keymap: 'the VNC client sends key codes (QEMU\'s default keymap)',
};



class Normaliser {
  private readonly entries = new Map<string, XlEntry>();

  constructor(
    ast: XlCfgAst,
    private readonly file: string,
    private readonly warn: Warn,
    private readonly opts: DomainConfigOptions,
  ) {
    for (const e of ast.entries) this.entries.set(e.key, e);
  }

  private where(e: XlEntry, p: XlPos = e.value): string {
    return `${e.file ?? this.file}:${p.line}:${p.col}`;
  }

  private error(e: XlEntry, msg: string, p: XlPos = e.value): XenoError {
    return new XenoError('CONFIG_INVALID', `${this.where(e, p)}: ${msg}`, {
      file: e.file ?? this.file,
      line: p.line,
      col: p.col,
      key: e.key,
    });
  }

  /** Runs `fn`, re-throwing its XenoError with the position of `p` in front. */
  private at<T>(e: XlEntry, p: XlPos, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (err instanceof XenoError) throw this.error(e, err.message, p);
      throw err;
    }
  }

  private string(key: string): string | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (e.value.kind !== 'string') throw this.error(e, `key "${key}" expects a string`);
    return e.value.value;
  }

  private int(key: string, min: number, max: number): number | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    const v = e.value;
    let n: number;
    if (v.kind === 'number') n = v.value;
    else if (v.kind === 'string' && /^\s*-?\d+\s*$/.test(v.value)) n = Number(v.value);
    else throw this.error(e, `key "${key}" expects a number`);
    if (!(n >= min && n <= max)) throw this.error(e, `key "${key}" must be between ${min} and ${max} (got ${n})`);
    return n;
  }

  private mem(key: string): number | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    const v = e.value;
    if (v.kind === 'list') throw this.error(e, `key "${key}" expects a number`);
    const mib = this.at(e, v, () => parseMemSize(v.value));
    if (mib < 1) throw this.error(e, `key "${key}" must be at least 1 MiB`);
    return mib;
  }

  private path(key: string): string | undefined {
    const s = this.string(key);
    if (s === undefined) return undefined;
    const e = this.entries.get(key)!;
    if (s === '') throw this.error(e, `key "${key}" is empty`);
    if (s.startsWith('/')) return s;
    if (this.opts.baseDir !== undefined) return path.resolve(this.opts.baseDir, s);
    throw this.error(e, `key "${key}": "${s}" is not an absolute path`);
  }

  /** The string elements of a list key, with their positions. */
  private stringList(key: string): Array<{ value: string; pos: XlPos; entry: XlEntry }> {
    const e = this.entries.get(key);
    if (!e) return [];
    if (e.value.kind !== 'list') throw this.error(e, `key "${key}" expects a list of strings`);
    return e.value.items.map((item) => {
      if (item.kind !== 'string') throw this.error(e, `key "${key}" expects a list of strings`, item);
      return { value: item.value, pos: item, entry: e };
    });
  }

  private action(key: string, dflt: LifecycleAction): LifecycleAction {
    const s = this.string(key);
    if (s === undefined) return dflt;
    if (!(LIFECYCLE_ACTIONS as readonly string[]).includes(s)) {
      throw this.error(this.entries.get(key)!, `key "${key}": unknown action "${s}" (${LIFECYCLE_ACTIONS.join(', ')})`);
    }
    return s as LifecycleAction;
  }

  private cpus(): string | undefined {
    const e = this.entries.get('cpus');
    if (!e) return undefined;
    const v = e.value;
    let text: string;
    if (v.kind === 'string') text = v.value;
    else if (v.kind === 'number') text = String(v.value);
    else {
      text = v.items
        .map((item: XlValue) => {
          if (item.kind === 'list') throw this.error(e, 'key "cpus" expects a string or a list of CPUs', item);
          return String(item.value);
        })
        .join(',');
      if (!text) throw this.error(e, 'key "cpus" is an empty list');
    }
    const norm = this.at(e, v, () => normaliseCpuList(text));
    return norm === 'all' ? undefined : norm;
  }

  /** `bootloader = "pygrub"` (or a path to it, as xm files write it); anything else is refused. */
  private bootloader(kernel: string | undefined): 'pygrub' | undefined {
    const b = this.string('bootloader');
    if (b === undefined || b === '') return undefined;
    const e = this.entries.get('bootloader')!;
    if (path.basename(b) !== 'pygrub') throw this.error(e, `key "bootloader": unknown bootloader "${b}" (xeno has pygrub)`);
    if (kernel !== undefined) {
      this.warn(`${this.where(e)}: warning: "bootloader" is ignored: "kernel" is set`);
      return undefined;
    }
    return 'pygrub';
  }

  /** xl writes bootloader_args as a list, xm as one string of flags. */
  private bootloaderArgs(): string[] | undefined {
    const e = this.entries.get('bootloader_args');
    if (!e) return undefined;
    if (e.value.kind === 'string') return e.value.value.split(/\s+/).filter(Boolean);
    return this.stringList('bootloader_args').map((x) => x.value);
  }

  private type(kernel: string | undefined): VmType {
    const typeEntry = this.entries.get('type');
    const builderEntry = this.entries.get('builder');
    const type = this.string('type');
    const builder = this.string('builder');
    let result: VmType;
    let from: XlEntry | undefined;
    if (type !== undefined) {
      if (type !== 'pv' && type !== 'pvh' && type !== 'hvm') {
        throw this.error(typeEntry!, `key "type": unknown type "${type}" (pv, pvh or hvm)`);
      }
      result = type;
      from = typeEntry;
      if (builder !== undefined) this.warn(`${this.where(builderEntry!)}: warning: "builder" is ignored when "type" is set`);
    } else if (builder !== undefined) {
      if (builder === 'linux') result = 'pv';
      else if (builder === 'hvm') result = 'hvm';
      else throw this.error(builderEntry!, `key "builder": unknown builder "${builder}" (linux or hvm; prefer type = "pv" | "pvh" | "hvm")`);
      from = builderEntry;
    } else {
      result = kernel !== undefined || this.bootloader(kernel) ? 'pv' : 'hvm';
    }
    if (result !== 'hvm' && kernel === undefined && from && !this.bootloader(kernel)) {
      throw this.error(from, `a ${result} guest needs a kernel or bootloader = "pygrub" (or type = "hvm" to boot from the disk)`);
    }
    return result;
  }

  private hostname(cmdline: string | undefined, extra: string | undefined): string | undefined {
    const explicit = this.string('hostname');
    if (explicit !== undefined) {
      if (!HOSTNAME_RE.test(explicit)) throw this.error(this.entries.get('hostname')!, `invalid hostname "${explicit}"`);
      return explicit;
    }
    const source = cmdline ?? extra;
    if (source === undefined) return undefined;
    const tokens = source.split(/\s+/);
    const found =
      tokens.find((t) => t.startsWith('xeno.hostname='))?.slice('xeno.hostname='.length) ??
      tokens.find((t) => t.startsWith('hostname='))?.slice('hostname='.length);
    if (found === undefined) return undefined;
    if (!HOSTNAME_RE.test(found)) {
      const e = this.entries.get(cmdline !== undefined ? 'cmdline' : 'extra')!;
      this.warn(`${this.where(e)}: warning: ignoring invalid hostname "${found}" in the kernel command line`);
      return undefined;
    }
    return found;
  }

  private disks(): DiskSpec[] {
    const seen = new Map<string, number>();
    return this.stringList('disk').map(({ value, pos, entry }, i) => {
      const d = this.at(entry, pos, () => parseDiskSpec(value, { baseDir: this.opts.baseDir }));
      const prev = seen.get(d.vdev);
      if (prev !== undefined) throw this.error(entry, `disk vdev "${d.vdev}" is already used by disk ${prev}`, pos);
      seen.set(d.vdev, i);
      return d;
    });
  }

  private vifs(): VifSpec[] {
    const macs = new Map<string, number>();
    const names = new Map<string, number>();
    return this.stringList('vif').map(({ value, pos, entry }, devid) => {
      const v = this.at(entry, pos, () => parseVifSpec(value, devid));
      for (const [val, seen, what] of [
        [v.mac, macs, 'mac'],
        [v.vifname, names, 'vifname'],
      ] as const) {
        if (val === undefined) continue;
        const prev = seen.get(val);
        if (prev !== undefined) throw this.error(entry, `vif ${what} "${val}" is already used by vif ${prev}`, pos);
        seen.set(val, devid);
      }
      return v;
    });
  }

  /** `boot = "dc"`: Xen's letters (hvm); a, the floppy, is gone. */
  private bootOrder(c: DomainConfig): string | undefined {
    const s = this.string('boot');
    if (s === undefined) return undefined;
    const e = this.entries.get('boot')!;
    if (!BOOT_ORDER_RE.test(s)) throw this.error(e, `key "boot": "${s}" is not a boot order (c disk, d cdrom, n network, each at most once)`);
    if (c.type !== 'hvm' || c.kernel !== undefined) {
      this.warn(`${this.where(e)}: warning: "boot" has no effect: only an hvm guest without a kernel boots from its devices`);
      return undefined;
    }
    return s;
  }

  /** xl's vnc/vnclisten/vncdisplay/vncpasswd, or the same in a vfb entry; sdl is refused politely. */
  private vnc(): VncSpec | undefined {
    const fields = new Map<string, { value: string; entry: XlEntry; pos: XlPos }>();
    for (const k of ['vnc', 'vnclisten', 'vncdisplay', 'vncpasswd', 'sdl', 'serial'] as const) {
      const e = this.entries.get(k);
      if (!e) continue;
      if (e.value.kind === 'list') throw this.error(e, `key "${k}" expects a string or number`);
      fields.set(k, { value: String(e.value.value), entry: e, pos: e.value });
    }
    for (const { value, pos, entry } of this.stringList('vfb')) {
      for (const part of value.split(',').map((x) => x.trim()).filter(Boolean)) {
        const m = /^([a-z_]+)=(.*)$/.exec(part);
        if (!m) throw this.error(entry, `vfb: "${part}" is not key=value`, pos);
        const key = m[1] === 'display' ? 'vfb-display' : m[1]!;
        if (['vnc', 'vnclisten', 'vncdisplay', 'vncpasswd', 'sdl'].includes(key)) fields.set(key, { value: m[2]!, entry, pos });
        else this.warn(`${this.where(entry, pos)}: warning: vfb "${key}" has no effect`);
      }
    }
    const serial = fields.get('serial');
    if (serial && serial.value !== 'pty') this.warn(`${this.where(serial.entry, serial.pos)}: warning: serial "${serial.value}" has no effect: the serial line is always xeno console`);
    const sdl = fields.get('sdl');
    if (sdl && sdl.value !== '0') this.warn(`${this.where(sdl.entry, sdl.pos)}: warning: "sdl" has no effect: xenod has no screen; use vnc = 1`);
    const on = fields.get('vnc');
    if (!on || on.value === '0') {
      for (const k of ['vnclisten', 'vncdisplay', 'vncpasswd']) {
        const f = fields.get(k);
        if (f) this.warn(`${this.where(f.entry, f.pos)}: warning: "${k}" has no effect without vnc = 1`);
      }
      return undefined;
    }
    if (on.value !== '1') throw this.error(on.entry, `vnc: "${on.value}" is not 0 or 1`, on.pos);
    const raw: Record<string, unknown> = {};
    const listen = fields.get('vnclisten');
    if (listen) raw.listen = listen.value;
    const display = fields.get('vncdisplay');
    if (display) {
      if (!/^\d{1,2}$/.test(display.value)) throw this.error(display.entry, `vncdisplay: "${display.value}" is not a display number (0 to 99)`, display.pos);
      raw.display = Number(display.value);
    }
    const pw = fields.get('vncpasswd');
    if (pw && pw.value !== '') raw.password = pw.value;
    const at = (listen ?? pw ?? on);
    return this.at(at.entry, at.pos, () => validateVnc('vnc', raw));
  }

  run(): DomainConfig {
    for (const e of this.entries.values()) {
      if ((KNOWN_KEYS as readonly string[]).includes(e.key)) continue;
      if ((MANAGED_KEYS as readonly string[]).includes(e.key)) continue; // read by managedKeysOf()
      if (Object.hasOwn(NO_EFFECT_KEYS, e.key)) this.warn(`${this.where(e, e)}: warning: "${e.key}" has no effect: ${NO_EFFECT_KEYS[e.key]}`);
      else this.warn(`${this.where(e, e)}: warning: ignoring unknown key "${e.key}"`);
    }

    const name = this.string('name');
    if (name === undefined) {
      throw new XenoError('CONFIG_INVALID', `${this.file}: the mandatory key "name" is missing`, { file: this.file });
    }
    const nameEntry = this.entries.get('name')!;
    if (!DOMAIN_NAME_RE.test(name)) {
      throw this.error(nameEntry, `invalid domain name "${name}" (1-64 characters of A-Z a-z 0-9 _ . -)`);
    }
    if (/^\d+$/.test(name)) throw this.error(nameEntry, `invalid domain name "${name}" (all digits: it would read as a domain id)`);

    const memory = this.mem('memory') ?? DEFAULT_MEMORY_MIB;
    const maxmem = this.mem('maxmem') ?? memory;
    if (maxmem < memory) {
      throw this.error(this.entries.get('maxmem')!, `maxmem (${maxmem}) must not be less than memory (${memory})`);
    }
    const vcpus = this.int('vcpus', 1, MAX_VCPUS) ?? 1;
    const maxvcpus = this.int('maxvcpus', 1, MAX_VCPUS) ?? vcpus;
    if (maxvcpus < vcpus) {
      throw this.error(this.entries.get('maxvcpus')!, `maxvcpus (${maxvcpus}) must not be less than vcpus (${vcpus})`);
    }

    const kernel = this.path('kernel');
    const ramdisk = this.path('ramdisk');
    const root = this.string('root');
    const extra = this.string('extra');
    const cmdline = this.string('cmdline');

    const c: DomainConfig = {
      name,
      type: this.type(kernel),
      memory,
      maxmem,
      vcpus,
      maxvcpus,
      disks: this.disks(),
      vifs: this.vifs(),
      onPoweroff: this.action('on_poweroff', 'destroy'),
      onReboot: this.action('on_reboot', 'restart'),
      onCrash: this.action('on_crash', 'destroy'),
    };

    const uuid = this.string('uuid');
    if (uuid !== undefined) {
      if (!UUID_RE.test(uuid)) throw this.error(this.entries.get('uuid')!, `invalid uuid "${uuid}" (expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)`);
      c.uuid = uuid.toLowerCase();
    }
    const cpus = this.cpus();
    if (cpus !== undefined) c.cpus = cpus;
    const weight = this.int('cpu_weight', 1, 65535);
    if (weight !== undefined) c.cpuWeight = weight;
    const cap = this.int('cap', 0, 100 * maxvcpus);
    if (cap !== undefined) c.cap = cap;
    const restartLimit = this.int('restart_limit', 0, 100_000);
    if (restartLimit !== undefined) c.restartLimit = restartLimit;
    const ha = this.int('ha', 0, 1);
    if (ha === 1) c.ha = true;
    const haPriority = this.int('ha_restart_priority', 0, MAX_HA_PRIORITY);
    if (haPriority !== undefined) c.haRestartPriority = haPriority;
    if (kernel !== undefined) c.kernel = kernel;
    if (ramdisk !== undefined) c.ramdisk = ramdisk;
    if (root !== undefined) c.root = root;
    if (extra !== undefined) c.extra = extra;
    if (cmdline !== undefined) c.cmdline = cmdline;
    const hostname = this.hostname(cmdline, extra);
    if (hostname !== undefined) c.hostname = hostname;
    const boot = this.bootOrder(c);
    if (boot !== undefined) c.boot = boot;
    const vnc = this.vnc();
    if (vnc !== undefined) c.vnc = vnc;
    const diskCache = this.string('disk_cache');
    if (diskCache !== undefined) {
      if (!(CACHE_MODES as readonly string[]).includes(diskCache)) {
        throw this.error(this.entries.get('disk_cache')!, `key "disk_cache": unknown cache mode "${diskCache}" (${CACHE_MODES.join(', ')})`);
      }
      c.diskCache = diskCache as CacheMode;
    }
    const bootloader = this.bootloader(kernel);
    if (bootloader !== undefined) {
      c.bootloader = bootloader;
      const args = this.bootloaderArgs();
      if (args?.length) c.bootloaderArgs = args;
    }
    return c;
  }
}

/**
 * Normalises a parsed xl.cfg into a DomainConfig. Unknown keys are reported through `warn`
 * (`file:line:col: warning: ignoring unknown key "k"`); invalid values throw CONFIG_INVALID.
 */
export function toDomainConfig(
  ast: XlCfgAst,
  file: string = ast.file,
  warn: Warn = () => {},
  opts: DomainConfigOptions = {},
): DomainConfig {
  return new Normaliser(ast, file, warn, opts).run();
}

/** File name used in positions of command-line overrides (the line is the override's index + 1). */
export const OVERRIDE_FILE = '<command line>';

/**
 * Applies `xl create CFG key=value ...` overrides: each is parsed as xl.cfg text and replaces (or
 * adds) the entry of its key. Returns a new AST; the input is not modified.
 */
/** xm took `name=web2` on the command line: a bare word (not a number) there means a string. */
function quoteBareWord(text: string): string {
  const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*([A-Za-z_/.][A-Za-z0-9_./:-]*)\s*$/.exec(text);
  return m ? `${m[1]} = "${m[2]}"` : text;
}

export function applyOverrides(ast: XlCfgAst, overrides: string[]): XlCfgAst {
  const entries = [...ast.entries];
  overrides.forEach((text, i) => {
    // Leading newlines put override N on line N, so positions say which override is wrong.
    const parsed = parseXlCfg('\n'.repeat(i) + quoteBareWord(text), OVERRIDE_FILE);
    if (parsed.entries.length === 0) {
      throw new XenoError('CONFIG_SYNTAX', `${OVERRIDE_FILE}:${i + 1}:1: override "${text}" is not a key=value assignment`);
    }
    for (const e of parsed.entries) {
      const at = entries.findIndex((x) => x.key === e.key);
      if (at >= 0) entries[at] = e;
      else entries.push(e);
    }
  });
  return { file: ast.file, entries };
}

export interface ParseDomainConfigFileOptions extends DomainConfigOptions {
  /** `key=value` overrides from the command line, applied after the file. */
  overrides?: string[];
}

/** Reads, parses and normalises a domain config file (relative paths resolve against `opts.baseDir`). */
export function parseDomainConfigFile(
  file: string,
  warn: Warn = () => {},
  opts: ParseDomainConfigFileOptions = {},
): DomainConfig {
  let ast = parseXlCfg(readConfigFile(file), file);
  if (opts.overrides?.length) ast = applyOverrides(ast, opts.overrides);
  return toDomainConfig(ast, file, warn, { baseDir: opts.baseDir });
}
