/**
 * GRUB for BIOS in a create-image disk, written without grub-install (which needs the disk as a
 * block device: a loop device here): the image boots by itself as an HVM guest (SeaBIOS, then
 * GRUB reading the same /boot/grub/grub.cfg pygrub reads), as an installed Debian does.
 *  - In the root tree: GRUB's modules in /boot/grub/i386-pc (what grub-install copies) and
 *    core.img, made by the guest's own grub-mkimage (grub-pc-bin is in every base) run in a chroot,
 *    with the first partition as its prefix.
 *  - On the disk: boot.img's code in the MBR (its partition table and disk id kept) and core.img in
 *    the gap before the partition. grub-mkimage already wrote core.img's block list (its sectors
 *    from sector 2 on), and boot.img loads sector 1 by default: nothing else to patch.
 */
import { closeSync, copyFileSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, writeSync } from 'node:fs';
import path from 'node:path';
import { XenoError } from '../common/errors.js';
import { run } from './base-cache.js';
import { PARTITION_OFFSET } from './mbr.js';

const GRUB_LIB = 'usr/lib/grub/i386-pc';
const GRUB_DIR = 'boot/grub/i386-pc';
/** What core.img holds: enough to find the partition and read GRUB's modules from it. */
const CORE_MODULES = ['biosdisk', 'part_msdos', 'ext2', 'normal', 'linux', 'search', 'echo', 'test'];
/** The bytes of boot.img that are code: after them come the disk id and the partition table. */
const MBR_CODE = 440;

/** Puts GRUB's modules and core.img into the tree's /boot/grub/i386-pc. */
export async function prepareGrubBios(root: string): Promise<void> {
  const lib = path.join(root, GRUB_LIB);
  let names: string[];
  try {
    names = readdirSync(lib);
  } catch {
    throw new XenoError('IMAGE_ERROR', `the root tree has no ${GRUB_LIB} (is grub-pc-bin installed?)`);
  }
  const dir = path.join(root, GRUB_DIR);
  mkdirSync(dir, { recursive: true });
  for (const n of names) if (/\.(mod|lst|img)$/.test(n)) copyFileSync(path.join(lib, n), path.join(dir, n));
  await run(['chroot', root, 'grub-mkimage', '-O', 'i386-pc', '-d', `/${GRUB_LIB}`, '-o', `/${GRUB_DIR}/core.img`, '-p', '(hd0,msdos1)/boot/grub', ...CORE_MODULES]);
}

/** Writes boot.img's code into `disk`'s MBR and core.img into the gap before its first partition. */
export function writeGrubBios(root: string, disk: string): void {
  const boot = readFileSync(path.join(root, GRUB_DIR, 'boot.img'));
  const core = readFileSync(path.join(root, GRUB_DIR, 'core.img'));
  if (boot.length !== 512) throw new XenoError('IMAGE_ERROR', `GRUB's boot.img is ${boot.length} bytes, not 512`);
  if (core.length > PARTITION_OFFSET - 512) throw new XenoError('IMAGE_ERROR', `GRUB's core.img (${core.length} bytes) does not fit before the partition`);
  const fd = openSync(disk, 'r+');
  try {
    const mbr = Buffer.alloc(512);
    readSync(fd, mbr, 0, 512, 0);
    boot.copy(mbr, 0, 0, MBR_CODE);
    writeSync(fd, mbr, 0, 512, 0);
    writeSync(fd, core, 0, core.length, 512);
  } finally {
    closeSync(fd);
  }
}
