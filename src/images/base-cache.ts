/**
 * The debootstrapped root tree of a distribution, built once and kept under
 * /var/cache/xeno/bases/<dist>-<key>/ (the key hashes the dist and the package list): every
 * further image of the same dist and packages starts from a copy of it instead of minutes of
 * debootstrap. Built in a temporary directory and renamed into place, so a crash or a concurrent
 * build never leaves a half tree that looks ready.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { XenoError } from '../common/errors.js';

export const DEFAULT_CACHE_DIR = '/var/cache/xeno/bases';

/** What every xeno image has: systemd, a kernel, ssh, the guest agent. */
export const BASE_PACKAGES = ['systemd', 'systemd-sysv', 'udev', 'linux-image-amd64', 'openssh-server', 'qemu-guest-agent'];

const PACKAGE_RE = /^[a-z0-9][a-z0-9+.-]{0,99}$/;
export const DIST_RE = /^[a-z][a-z0-9-]{1,30}$/;

export function checkPackages(pkgs: readonly string[]): string[] {
  for (const p of pkgs) if (!PACKAGE_RE.test(p)) throw new XenoError('BAD_REQUEST', `invalid package name ${JSON.stringify(p)}`);
  return [...new Set([...BASE_PACKAGES, ...pkgs])].sort();
}

export function baseKey(dist: string, pkgs: readonly string[]): string {
  return createHash('sha256').update(`${dist}\n${pkgs.join(',')}`).digest('hex').slice(0, 12);
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

export async function ensureBase(opts: { dist: string; packages: string[]; mirror: string; cacheDir: string; onLine?: (l: string) => void }): Promise<BaseResult> {
  const dir = path.join(opts.cacheDir, `${opts.dist}-${baseKey(opts.dist, opts.packages)}`);
  if (existsSync(path.join(dir, 'etc/os-release'))) return { dir, cached: true };
  mkdirSync(opts.cacheDir, { recursive: true });
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  try {
    await run(['debootstrap', '--variant=minbase', `--include=${opts.packages.join(',')}`, opts.dist, tmp, opts.mirror], opts.onLine);
    // The downloaded .debs are not part of an image.
    const archives = path.join(tmp, 'var/cache/apt/archives');
    for (const f of existsSync(archives) ? readdirSync(archives) : []) if (f.endsWith('.deb')) rmSync(path.join(archives, f));
    if (!existsSync(dir)) renameSync(tmp, dir);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return { dir, cached: false };
}
