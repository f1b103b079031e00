/**
 * Pure: the boot entries of a guest's own bootloader config (GRUB 2 grub.cfg, extlinux/syslinux,
 * GRUB legacy menu.lst) and the one to boot, as pygrub picks it. No I/O.
 */
import { XenoError } from '../common/errors.js';

export interface BootEntry {
  title: string;
  kernel: string;
  initrd?: string;
  args: string;
}

export interface BootMenu {
  entries: BootEntry[];
  /** Index or title named by the config's default, absent = the first entry. */
  default?: string;
}

export type MenuKind = 'grub2' | 'extlinux' | 'grub-legacy';

/** Removes a GRUB device prefix such as (hd0,msdos1): paths are relative to the file system read. */
function grubPath(p: string): string {
  return p.replace(/^\([^)]*\)/, '');
}

function unquote(s: string): string {
  const t = s.trim();
  if ((t.startsWith("'") && t.endsWith("'")) || (t.startsWith('"') && t.endsWith('"'))) return t.slice(1, -1);
  return t;
}

/** GRUB 2: top-level menuentry blocks (submenus are not descended into, as pygrub's default does). */
export function parseGrub2(text: string): BootMenu {
  const menu: BootMenu = { entries: [] };
  let depth = 0;
  let cur: Partial<BootEntry> | null = null;
  let inSubmenu = 0;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const def = /^set\s+default=(.*)$/.exec(line);
    if (def && depth === 0) menu.default = unquote(def[1]!);
    const me = /^menuentry\s+(?:'([^']*)'|"([^"]*)"|(\S+)).*\{\s*$/.exec(line);
    if (me && depth === 0) {
      cur = { title: me[1] ?? me[2] ?? me[3] ?? '' };
      depth++;
      continue;
    }
    if (/^submenu\b.*\{\s*$/.test(line)) {
      if (depth === 0) inSubmenu = 1;
      depth++;
      continue;
    }
    if (line === '}') {
      depth = Math.max(0, depth - 1);
      if (depth === 0) {
        if (cur && !inSubmenu && cur.kernel) menu.entries.push({ title: cur.title!, kernel: cur.kernel, initrd: cur.initrd, args: cur.args ?? '' });
        cur = null;
        inSubmenu = 0;
      }
      continue;
    }
    if (!cur || depth !== 1) continue;
    const k = /^(linux|linux16|linuxefi|kernel)\s+(\S+)\s*(.*)$/.exec(line);
    if (k) {
      cur.kernel = grubPath(k[2]!);
      cur.args = k[3]!.trim();
    }
    const i = /^(initrd|initrd16|initrdefi)\s+(\S+)/.exec(line);
    if (i) cur.initrd = grubPath(i[2]!);
  }
  return menu;
}

/** extlinux.conf / syslinux.cfg: LABEL blocks with KERNEL|LINUX, INITRD and APPEND (initrd= inside). */
export function parseExtlinux(text: string, configDir: string): BootMenu {
  const menu: BootMenu = { entries: [] };
  let cur: Partial<BootEntry> | null = null;
  const abs = (p: string) => (p.startsWith('/') ? p : `${configDir.replace(/\/$/, '')}/${p}`);
  const push = () => {
    if (cur?.kernel) menu.entries.push({ title: cur.title ?? '', kernel: cur.kernel, initrd: cur.initrd, args: cur.args ?? '' });
  };
  for (const raw of text.split('\n')) {
    const m = /^\s*(\S+)\s*(.*?)\s*$/.exec(raw);
    if (!m || m[1]!.startsWith('#')) continue;
    const key = m[1]!.toLowerCase();
    const val = m[2]!;
    if (key === 'default') menu.default = val;
    else if (key === 'label') {
      push();
      cur = { title: val };
    } else if (cur && (key === 'kernel' || key === 'linux')) cur.kernel = abs(val);
    else if (cur && key === 'initrd') cur.initrd = abs(val.split(',')[0]!);
    else if (cur && key === 'append') {
      const words = val.split(/\s+/);
      const ird = words.find((w) => w.startsWith('initrd='));
      if (ird && !cur.initrd) cur.initrd = abs(ird.slice('initrd='.length).split(',')[0]!);
      cur.args = words.filter((w) => !w.startsWith('initrd=')).join(' ');
    }
  }
  push();
  return menu;
}

/** GRUB legacy menu.lst: `default N`, `title`, `kernel PATH ARGS`, `initrd PATH`. */
export function parseMenuLst(text: string): BootMenu {
  const menu: BootMenu = { entries: [] };
  let cur: Partial<BootEntry> | null = null;
  const push = () => {
    if (cur?.kernel) menu.entries.push({ title: cur.title ?? '', kernel: cur.kernel, initrd: cur.initrd, args: cur.args ?? '' });
  };
  for (const raw of text.split('\n')) {
    const m = /^\s*(\S+)\s*(.*?)\s*$/.exec(raw);
    if (!m || m[1]!.startsWith('#')) continue;
    const key = m[1]!.toLowerCase();
    const val = m[2]!;
    if (key === 'default' && !cur) menu.default = val;
    else if (key === 'title') {
      push();
      cur = { title: val };
    } else if (cur && key === 'kernel') {
      const [k, ...args] = val.split(/\s+/);
      cur.kernel = grubPath(k!);
      cur.args = args.join(' ');
    } else if (cur && key === 'initrd') cur.initrd = grubPath(val.split(/\s+/)[0]!);
  }
  push();
  return menu;
}

export function parseBootMenu(kind: MenuKind, text: string, configPath: string): BootMenu {
  if (kind === 'grub2') return parseGrub2(text);
  if (kind === 'grub-legacy') return parseMenuLst(text);
  return parseExtlinux(text, configPath.slice(0, configPath.lastIndexOf('/')) || '/');
}

export interface PygrubArgs {
  entry?: string;
  kernel?: string;
  ramdisk?: string;
  args?: string;
}

/** pygrub's own flags, `--entry=N`, `--kernel=PATH`, `--ramdisk=PATH`, `--args=ARGS`; others are refused. */
export function parsePygrubArgs(argv: readonly string[]): PygrubArgs {
  const out: PygrubArgs = {};
  for (let i = 0; i < argv.length; i++) {
    const m = /^--(entry|kernel|ramdisk|args)(?:=(.*))?$/.exec(argv[i]!);
    if (!m) throw new XenoError('CONFIG_INVALID', `bootloader_args: unknown pygrub flag "${argv[i]}" (--entry=, --kernel=, --ramdisk=, --args=)`);
    const value = m[2] ?? argv[++i];
    if (value === undefined) throw new XenoError('CONFIG_INVALID', `bootloader_args: --${m[1]} needs a value`);
    out[m[1] as keyof PygrubArgs] = value;
  }
  return out;
}

/** The entry to boot: --entry (index or title), else the config's default, else the first. */
export function chooseEntry(menu: BootMenu, args: PygrubArgs = {}): BootEntry {
  if (menu.entries.length === 0) throw new XenoError('BOOTLOADER_ERROR', 'the boot config has no bootable entry');
  const want = args.entry ?? menu.default;
  if (want === undefined || want === '' || want === 'saved' || want === '${saved_entry}') return menu.entries[0]!;
  if (/^\d+$/.test(want)) {
    const e = menu.entries[Number(want)];
    if (e) return e;
    if (args.entry !== undefined) throw new XenoError('CONFIG_INVALID', `bootloader_args: --entry=${want}: the boot config has ${menu.entries.length} entries`);
    return menu.entries[0]!;
  }
  const e = menu.entries.find((x) => x.title === want);
  if (e) return e;
  if (args.entry !== undefined) throw new XenoError('CONFIG_INVALID', `bootloader_args: --entry=${want}: no entry with that title`);
  return menu.entries[0]!;
}
