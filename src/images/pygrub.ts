/**
 * pygrub, the xeno way: finds the guest's bootloader config on its first disk, picks the entry
 * (the config's default, or bootloader_args' --entry), and copies its kernel and initrd into the
 * domain's run dir. Done at every start, so a kernel upgraded inside the guest boots next time.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { XenoError } from '../common/errors.js';
import type { DiskSpec } from '../model/domain-config.js';
import { chooseEntry, parseBootMenu, parsePygrubArgs, type MenuKind } from './boot-menu.js';
import { dumpFsFile, fsDevice, isExtFs, openRawView, partitionOffsets, readFsFile } from './disk-view.js';

/** Where bootloaders keep their config, on a root file system or a separate /boot. */
const CONFIGS: ReadonlyArray<[string, MenuKind]> = [
  ['/boot/grub/grub.cfg', 'grub2'], ['/grub/grub.cfg', 'grub2'],
  ['/boot/grub2/grub.cfg', 'grub2'], ['/grub2/grub.cfg', 'grub2'],
  ['/boot/extlinux/extlinux.conf', 'extlinux'], ['/extlinux/extlinux.conf', 'extlinux'], ['/extlinux.conf', 'extlinux'],
  ['/boot/syslinux/syslinux.cfg', 'extlinux'], ['/syslinux/syslinux.cfg', 'extlinux'], ['/syslinux.cfg', 'extlinux'],
  ['/boot/grub/menu.lst', 'grub-legacy'], ['/grub/menu.lst', 'grub-legacy'],
];

export interface PygrubResult {
  kernel: string;
  ramdisk?: string;
  /** The entry's command line (plus --args). */
  args: string;
  title: string;
  /** Where the config was found, e.g. "partition 1: /boot/grub/grub.cfg". */
  source: string;
}

/** The disk pygrub reads: the first non-cdrom disk, as xl's pygrub does. */
export function bootDisk(disks: readonly DiskSpec[]): DiskSpec {
  const d = disks.find((x) => x.devtype === 'disk' && x.target);
  if (!d) throw new XenoError('CONFIG_INVALID', 'bootloader = "pygrub" needs a disk to read the kernel from');
  return d;
}

export async function pygrub(disk: DiskSpec, bootloaderArgs: readonly string[], outDir: string): Promise<PygrubResult> {
  const args = parsePygrubArgs(bootloaderArgs);
  const view = await openRawView(disk.target, disk.format);
  try {
    const offsets = partitionOffsets(view.file);
    const seen: string[] = [];
    for (const [i, off] of (offsets.length ? offsets : [0]).entries()) {
      const dev = fsDevice(view.file, off);
      const where = offsets.length ? `partition ${i + 1} (at ${off})` : 'the whole disk';
      const ext = await isExtFs(dev);
      if (ext !== true) {
        seen.push(`${where}: not ext2/3/4 (${ext})`);
        continue;
      }
      seen.push(`${where}: ext2/3/4 without a boot config`);
      for (const [cfg, kind] of CONFIGS) {
        const text = await readFsFile(dev, cfg);
        if (text === null) continue;
        const entry = chooseEntry(parseBootMenu(kind, text, cfg), args);
        mkdirSync(outDir, { recursive: true, mode: 0o700 });
        const kernel = path.join(outDir, 'kernel');
        await dumpFsFile(dev, args.kernel ?? entry.kernel, kernel);
        const initrdPath = args.ramdisk ?? entry.initrd;
        let ramdisk: string | undefined;
        if (initrdPath) {
          ramdisk = path.join(outDir, 'initrd');
          await dumpFsFile(dev, initrdPath, ramdisk);
        }
        const cmdline = [entry.args, args.args].filter(Boolean).join(' ');
        return { kernel, ramdisk, args: cmdline, title: entry.title, source: `${offsets.length ? `partition ${i + 1}` : 'whole disk'}: ${cfg}` };
      }
    }
    throw new XenoError('BOOTLOADER_ERROR', `pygrub: no ext2/3/4 file system on ${disk.target} holds a grub.cfg, extlinux.conf, syslinux.cfg or menu.lst (${seen.join('; ')})`);
  } finally {
    await view.close();
  }
}
