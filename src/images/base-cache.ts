/**
 * The debootstrapped root tree of a distribution, built once and kept under
 * /var/cache/xeno/bases/<dist>-<key>/ (the key hashes the dist and the package list): every
 * further image of the same dist and packages starts from a copy of it instead of minutes of
 * debootstrap. Built in a temporary directory and renamed into place, so a crash never leaves a
 * half tree that looks ready; one build per base at a time (a lock file), and the downloaded
 * .debs kept in <cacheDir>/debs for the next base.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { XenoError } from '../common/errors.js';

export const DEFAULT_CACHE_DIR = '/var/cache/xeno/bases';
/** Under the cache dir: the downloaded .debs, named as apt names them. */
export const DEB_CACHE = 'debs';

/**
 * What every xeno image has: systemd, a kernel, ssh, the guest agent; D-Bus, without which
 * systemd-logind does not start and nothing hears the ACPI power button (`xeno shutdown` would
 * wait for the agent fallback; debootstrap's minbase leaves dbus out, systemd only recommends
 * it); GRUB's BIOS images and modules (grub-pc-bin, no grub-install: see grub-bios.ts), so the
 * disk also boots by itself as an HVM guest; zstd so that initramfs-tools compresses with it (without it, gzip -9: slower to build and
 * to unpack at each TCG boot).
 */
export const BASE_PACKAGES = ['systemd', 'systemd-sysv', 'udev', 'dbus', 'grub-pc-bin', 'linux-image-amd64', 'openssh-server', 'qemu-guest-agent', 'zstd'];

/** Bumped when the way a base is built changes, so a base built the old way is not reused. */
const RECIPE = 4;

/**
 * Written into the tree before debootstrap runs, so the kernel's postinst builds a small initramfs:
 * the drivers of the disks a xeno guest can have (virtio, SCSI, AHCI, IDE, NVMe) and ext4, instead
 * of MODULES=most (every storage and file system driver: a 36 MB initramfs that took most of a cold
 * build's configure time on a loaded host). MODULES=dep cannot work here: it probes the build
 * host's own devices. Later kernel upgrades inside the guest build theirs the same way.
 */
export const INITRAMFS_FILES: Record<string, string> = {
  'etc/initramfs-tools/conf.d/xeno.conf': '# xeno create-image: the listed modules only (see modules.d/xeno)\nMODULES=list\n',
  'usr/share/initramfs-tools/modules.d/xeno': ['virtio_pci', 'virtio_blk', 'virtio_scsi', 'sd_mod', 'sr_mod', 'ahci', 'ata_piix', 'nvme', 'ext4', 'crc32c_generic', ''].join('\n'),
};

const PACKAGE_RE = /^[a-z0-9][a-z0-9+.-]{0,99}$/;
export const DIST_RE = /^[a-z][a-z0-9-]{1,30}$/;

export function checkPackages(pkgs: readonly string[]): string[] {
  for (const p of pkgs) if (!PACKAGE_RE.test(p)) throw new XenoError('BAD_REQUEST', `invalid package name ${JSON.stringify(p)}`);
  return [...new Set([...BASE_PACKAGES, ...pkgs])].sort();
}

export function baseKey(dist: string, pkgs: readonly string[]): string {
  return createHash('sha256').update(`${dist}\n${pkgs.join(',')}${RECIPE > 1 ? `\nrecipe ${RECIPE}` : ''}`).digest('hex').slice(0, 12);
}

/** Runs a command, feeding each output line to `onLine`; throws IMAGE_ERROR with its tail. */
export function run(argv: string[], onLine: (l: string) => void = () => undefined, opts: { input?: string } = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    const tail: string[] = [];
    const feed = (d: Buffer) => {
      for (const l of d.toString().split('\n')) {
        if (!l.trim()) continue;
        tail.push(l);
        if (tail.length > 8) tail.shift();
        onLine(l);
      }
    };
    child.stdout!.on('data', feed);
    child.stderr!.on('data', feed);
    if (opts.input !== undefined) child.stdin!.end(opts.input);
    child.on('error', (e) => reject(new XenoError('IMAGE_ERROR', `${argv[0]}: ${e.message}${(e as NodeJS.ErrnoException).code === 'ENOENT' ? ' (not installed?)' : ''}`)));
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new XenoError('IMAGE_ERROR', `${argv[0]} failed (exit ${code}): ${tail.join(' | ')}`))));
  });
}

export interface BaseResult {
  dir: string;
  cached: boolean;
}

/**
 * One build of a base at a time: a second create-image of the same dist and packages (two tests of
 * a suite, two admins) waits for the first and copies its result, instead of a second debootstrap
 * competing for the same CPU and disk. The lock is a file naming its holder's pid: one whose
 * holder is gone (killed mid-build) is taken over.
 */
async function withBuildLock<T>(lock: string, onLine: (l: string) => void, fn: () => Promise<T>): Promise<T> {
  for (let said = false; ; ) {
    try {
      writeFileSync(lock, `${process.pid}\n`, { flag: 'wx' });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const holder = Number(readFileSync(lock, 'utf8').trim());
    if (!alive(holder)) {
      rmSync(lock, { force: true });
      continue;
    }
    if (!said) onLine(`I: waiting for the build of this base by pid ${holder}`);
    said = true;
    await new Promise((r) => setTimeout(r, 2000));
  }
  try {
    return await fn();
  } finally {
    rmSync(lock, { force: true });
  }
}

function alive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export async function ensureBase(opts: { dist: string; packages: string[]; mirror: string; cacheDir: string; onLine?: (l: string) => void }): Promise<BaseResult> {
  const dir = path.join(opts.cacheDir, `${opts.dist}-${baseKey(opts.dist, opts.packages)}`);
  const ready = () => existsSync(path.join(dir, 'etc/os-release'));
  if (ready()) return { dir, cached: true };
  mkdirSync(opts.cacheDir, { recursive: true });
  const onLine = opts.onLine ?? (() => undefined);
  return withBuildLock(`${dir}.lock`, onLine, async () => {
    if (ready()) return { dir, cached: true };
    const tmp = `${dir}.tmp-${process.pid}`;
    // Under the lock no other build of this base runs: any tmp dir of it is a killed build's.
    const stem = `${path.basename(dir)}.tmp-`;
    for (const f of readdirSync(opts.cacheDir)) if (f.startsWith(stem)) rmSync(path.join(opts.cacheDir, f), { recursive: true, force: true });
    // The .debs are kept between builds (a base for another package list, or a rebuilt one,
    // downloads only what it lacks); debootstrap checks each against the signed index as always.
    const debs = path.join(opts.cacheDir, DEB_CACHE);
    mkdirSync(path.join(debs, 'partial'), { recursive: true });
    try {
      for (const [f, text] of Object.entries(INITRAMFS_FILES)) {
        mkdirSync(path.dirname(path.join(tmp, f)), { recursive: true });
        writeFileSync(path.join(tmp, f), text);
      }
      await run(['debootstrap', '--variant=minbase', `--cache-dir=${debs}`, `--include=${opts.packages.join(',')}`, opts.dist, tmp, opts.mirror], onLine);
      // The downloaded .debs are not part of an image.
      const archives = path.join(tmp, 'var/cache/apt/archives');
      for (const f of existsSync(archives) ? readdirSync(archives) : []) if (f.endsWith('.deb')) rmSync(path.join(archives, f));
      renameSync(tmp, dir);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
    return { dir, cached: false };
  });
}
