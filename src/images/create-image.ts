/**
 * `xeno create-image`: a Debian guest in one command, built without loop or nbd devices (nothing
 * is mounted): the cached debootstrap tree is copied, customised, written into an ext4 file system
 * by `mkfs.ext4 -d` (labelled xeno-root, in the one partition of an MBR disk), converted to qcow2, and an xl.cfg booting it through pygrub is written beside it.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { XenoError } from '../common/errors.js';
import { HOSTNAME_RE } from '../config/validate-fields.js';
import { hostMirror } from './apt-mirror.js';
import { DEFAULT_CACHE_DIR, DIST_RE, checkPackages, ensureBase, run } from './base-cache.js';
import { ROOT_LABEL, customise, type GuestNet } from './guest-files.js';
import { prepareGrubBios, writeGrubBios } from './grub-bios.js';
import { writeMbrDisk } from './mbr.js';

export interface CreateImageOptions {
  hostname: string;
  dist: string;
  /** Disk size as qemu-img reads it (4G, 512M). */
  size: string;
  memory: number;
  vcpus: number;
  /** A static address with prefix (10.0.0.10/24); absent = DHCP. */
  ip?: string;
  gateway?: string;
  sshKeyFile?: string;
  password?: string;
  packages: string[];
  bootloader: 'pygrub' | 'kernel';
  format: 'qcow2' | 'raw';
  dir: string;
  cacheDir?: string;
  mirror?: string;
}

export interface CreateImageResult {
  image: string;
  config: string;
  baseCached: boolean;
  mirror: string;
  /** ms per step. */
  timings: Record<string, number>;
}

export type Step = 'base' | 'copy' | 'customise' | 'mkfs' | 'convert' | 'config';
export const STEPS: Step[] = ['base', 'copy', 'customise', 'mkfs', 'convert', 'config'];

function bad(msg: string): XenoError {
  return new XenoError('BAD_REQUEST', `create-image: ${msg}`);
}

function sizeBytes(size: string): number {
  const m = /^(\d+)([KMGT]?)$/i.exec(size);
  if (!m) throw bad(`--size ${JSON.stringify(size)}: expected a size like 4G or 512M`);
  const bytes = Number(m[1]) * 1024 ** ' KMGT'.indexOf((m[2] || ' ').toUpperCase());
  if (bytes < 256 * 1024 ** 2) throw bad(`--size ${size}: at least 256M`);
  return bytes;
}

function checkNet(o: CreateImageOptions): GuestNet {
  if (o.ip === undefined) return {};
  const ipv4 = /^(\d{1,3})(\.\d{1,3}){3}$/;
  const [addr, prefix = '24'] = o.ip.split('/');
  if (!ipv4.test(addr!) || !/^\d+$/.test(prefix) || Number(prefix) > 32) throw bad(`--ip ${JSON.stringify(o.ip)}: expected an IPv4 address, optionally /PREFIX`);
  if (o.gateway !== undefined && !ipv4.test(o.gateway)) throw bad(`--gateway ${JSON.stringify(o.gateway)}: expected an IPv4 address`);
  return { address: `${addr}/${prefix}`, gateway: o.gateway };
}

/** All argument checks, before anything is made. */
function check(o: CreateImageOptions): { net: GuestNet; bytes: number; packages: string[]; sshKey?: string } {
  if (!HOSTNAME_RE.test(o.hostname) || o.hostname.includes('.')) throw bad(`--hostname ${JSON.stringify(o.hostname)}: one label of A-Z a-z 0-9 -`);
  if (!DIST_RE.test(o.dist)) throw bad(`--dist ${JSON.stringify(o.dist)}: a Debian suite name such as bookworm`);
  if (!Number.isInteger(o.vcpus) || o.vcpus < 1 || o.vcpus > 64) throw bad('--vcpus: 1 to 64');
  if (!Number.isInteger(o.memory) || o.memory < 128) throw bad('--memory: at least 128 (MiB; Debian does not boot in less)');
  if (o.password !== undefined && /[\r\n]/.test(o.password)) throw bad('the password cannot contain a line break');
  if (!path.isAbsolute(o.dir)) throw bad(`--dir ${o.dir}: an absolute path`);
  if (process.getuid?.() !== 0) throw new XenoError('BAD_STATE', 'create-image runs as root (debootstrap, and mkfs.ext4 -d keeps file owners only as root)');
  let sshKey: string | undefined;
  if (o.sshKeyFile !== undefined) {
    try {
      sshKey = readFileSync(o.sshKeyFile, 'utf8').trim();
    } catch (e) {
      throw new XenoError('NO_SUCH_FILE', `--ssh-key ${o.sshKeyFile}: ${(e as Error).message}`);
    }
    if (!/^(ssh-|ecdsa-|sk-)\S+ \S+/.test(sshKey)) throw bad(`--ssh-key ${o.sshKeyFile} is not an OpenSSH public key`);
  }
  return { net: checkNet(o), bytes: sizeBytes(o.size), packages: checkPackages(o.packages), sshKey };
}

export function xlConfig(o: CreateImageOptions, image: string, kernel?: { kernel: string; ramdisk: string }): string {
  const lines = [
    `# ${o.hostname}: Debian ${o.dist}, made by xeno create-image`,
    `name = "${o.hostname}"`,
    `memory = ${o.memory}`,
    `vcpus = ${o.vcpus}`,
    `hostname = "${o.hostname}"`,
    `disk = ['format=${o.format},vdev=xvda,access=rw,target=${image}']`,
    `vif = ['${o.ip ? `ip=${o.ip.split('/')[0]}` : ''}']`,
  ];
  if (kernel) lines.push(`kernel = "${kernel.kernel}"`, `ramdisk = "${kernel.ramdisk}"`, `root = "LABEL=${ROOT_LABEL} ro"`);
  else lines.push('bootloader = "pygrub"');
  return lines.join('\n') + '\n';
}

export async function createImage(o: CreateImageOptions, progress: (step: Step, detail: string) => void = () => undefined): Promise<CreateImageResult> {
  const { net, bytes, packages, sshKey } = check(o);
  const image = path.join(o.dir, `${o.hostname}.${o.format === 'qcow2' ? 'qcow2' : 'img'}`);
  const cfgFile = path.join(o.dir, `${o.hostname}.cfg`);
  for (const f of [image, cfgFile]) if (existsSync(f)) throw new XenoError('DOMAIN_EXISTS', `create-image: ${f} already exists`);
  mkdirSync(o.dir, { recursive: true });
  const mirror = o.mirror ?? hostMirror(o.dist);
  const work = path.join(o.dir, `.${o.hostname}.build-${process.pid}`);
  const timings: Record<string, number> = {};
  let t = performance.now();
  const lap = (s: Step) => {
    const now = performance.now();
    timings[s] = Math.round(now - t);
    t = now;
  };
  try {
    progress('base', `debootstrap ${o.dist} from ${mirror}`);
    const base = await ensureBase({ dist: o.dist, packages, mirror, cacheDir: o.cacheDir ?? DEFAULT_CACHE_DIR, onLine: (l) => progress('base', l) });
    lap('base');
    progress('copy', `${base.cached ? 'cached base' : 'new base'} ${base.dir}`);
    mkdirSync(work);
    await run(['cp', '-a', '-x', '--reflink=auto', `${base.dir}/.`, path.join(work, 'root')]);
    lap('copy');
    progress('customise', `hostname ${o.hostname}, ${net.address ? `static ${net.address}` : 'DHCP'}`);
    await customise(path.join(work, 'root'), { hostname: o.hostname, net, sshKey, password: o.password });
    await prepareGrubBios(path.join(work, 'root'));
    let kernel: { kernel: string; ramdisk: string } | undefined;
    if (o.bootloader === 'kernel') {
      // PV-style boot with kernel= / ramdisk= copied beside the image.
      kernel = { kernel: path.join(o.dir, `${o.hostname}.vmlinuz`), ramdisk: path.join(o.dir, `${o.hostname}.initrd`) };
      await run(['cp', '-L', path.join(work, 'root/vmlinuz'), kernel.kernel]);
      await run(['cp', '-L', path.join(work, 'root/initrd.img'), kernel.ramdisk]);
    }
    lap('customise');
    const raw = path.join(work, 'disk.raw');
    progress('mkfs', `ext4 in partition 1 of ${o.size}, labelled ${ROOT_LABEL}`);
    const part = writeMbrDisk(raw, bytes);
    await run(['mkfs.ext4', '-q', '-F', '-L', ROOT_LABEL, '-E', `offset=${part.offset}`, '-d', path.join(work, 'root'), raw, `${Math.floor(part.partitionBytes / 1024)}k`]);
    writeGrubBios(path.join(work, 'root'), raw);
    lap('mkfs');
    if (o.format === 'qcow2') {
      progress('convert', 'qemu-img convert -O qcow2');
      await run(['qemu-img', 'convert', '-O', 'qcow2', raw, `${image}.part`]);
    } else {
      progress('convert', 'raw image kept as is');
      renameSync(raw, `${image}.part`);
    }
    renameSync(`${image}.part`, image);
    lap('convert');
    writeFileSync(cfgFile, xlConfig(o, image, kernel));
    progress('config', cfgFile);
    lap('config');
    return { image, config: cfgFile, baseCached: base.cached, mirror, timings };
  } catch (e) {
    // Nothing half-made stays: a failed build leaves no image, no config, no kernel copies.
    for (const f of [`${image}.part`, path.join(o.dir, `${o.hostname}.vmlinuz`), path.join(o.dir, `${o.hostname}.initrd`)]) rmSync(f, { force: true });
    throw e;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
