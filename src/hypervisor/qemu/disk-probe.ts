/**
 * What the host says about a disk's backend, for the command line and hot-plug: block device or
 * file, and whether its filesystem takes O_DIRECT (probed by opening the target with it: tmpfs and
 * some FUSE/overlay filesystems refuse). The default cache mode follows: none (host page cache
 * bypassed, safe for migration on shared storage, no double caching) with io_uring where O_DIRECT
 * works, writeback elsewhere. An explicit mode that needs O_DIRECT where there is none is refused.
 */
import { closeSync, constants, existsSync, openSync, readFileSync, statSync } from 'node:fs';
import { XenoError } from '../../common/errors.js';
import type { CacheMode, DiskSpec, DomainConfig } from '../../model/domain-config.js';
import { cacheFlags, type AioMode, type DiskHostFacts } from './disk-argv.js';

/** Whether `target` opens with O_DIRECT (read-only open: nothing is written). */
export function directIoWorks(target: string): boolean {
  try {
    closeSync(openSync(target, constants.O_RDONLY | constants.O_DIRECT));
    return true;
  } catch {
    return false;
  }
}

let ioUring: boolean | undefined;
/** io_uring unless the kernel turns it off (kernel.io_uring_disabled); else linux-aio (native). */
function directAio(): AioMode {
  if (ioUring === undefined) {
    try {
      ioUring = !existsSync('/proc/sys/kernel/io_uring_disabled') || readFileSync('/proc/sys/kernel/io_uring_disabled', 'utf8').trim() === '0';
    } catch {
      ioUring = false;
    }
  }
  return ioUring ? 'io_uring' : 'native';
}

/** The facts of one disk (with a target) of a guest whose disks default to `guestCache`. */
export function diskFactsFor(d: DiskSpec, guestCache?: CacheMode): DiskHostFacts {
  let st;
  try {
    st = statSync(d.target);
  } catch (e) {
    throw new XenoError('NO_SUCH_FILE', `disk ${d.vdev}: ${d.target}: ${(e as Error).message}`);
  }
  const direct = directIoWorks(d.target);
  const wanted = d.cache ?? guestCache;
  const cache: CacheMode = wanted ?? (direct ? 'none' : 'writeback');
  if (cacheFlags(cache).direct && !direct) {
    throw new XenoError('CONFIG_INVALID', `disk ${d.vdev}: cache=${cache} needs O_DIRECT, which the filesystem of ${d.target} does not support (tmpfs?): use cache=writeback`);
  }
  return { hostDevice: st.isBlockDevice(), cache, aio: cacheFlags(cache).direct ? directAio() : 'threads' };
}

/** Facts for every disk of a config that has a target (an empty cdrom has none). */
export function hostDiskFacts(c: DomainConfig): Map<string, DiskHostFacts> {
  const out = new Map<string, DiskHostFacts>();
  for (const d of c.disks) if (d.target) out.set(d.vdev, diskFactsFor(d, c.diskCache));
  return out;
}
