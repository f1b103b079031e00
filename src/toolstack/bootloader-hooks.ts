/**
 * bootloader = "pygrub": before every launch (create, restart, restore, incoming migration) the
 * kernel and initrd named by the guest's own boot config are copied into the run dir, and the
 * domain launches with them and the entry's command line (plus root= and extra, or cmdline). The stored config keeps
 * no kernel, so a kernel upgraded inside the guest is what the next start boots.
 */
import path from 'node:path';
import type { Logger } from 'pino';
import { bootDisk, pygrub } from '../images/pygrub.js';
import { effectiveCmdline } from '../model/domain-config.js';
import type { DomainHooks, Prepared } from './hooks.js';
import type { DomainRecord } from './store.js';

export function bootloaderHooks(log: Logger): Partial<DomainHooks> {
  return {
    async beforeLaunch(rec: DomainRecord): Promise<Prepared> {
      const c = rec.config;
      if (c.bootloader !== 'pygrub' || c.kernel !== undefined) return { nics: [] };
      const r = await pygrub(bootDisk(c.disks), c.bootloaderArgs ?? [], path.join(rec.runDir, 'boot'));
      log.info({ domain: rec.name, entry: r.title, source: r.source }, 'pygrub: booting the guest\'s own kernel');
      // As libxl hands root= and extra to pygrub as --args: appended to the entry's line.
      const cmdline = [r.args, effectiveCmdline(c)].filter(Boolean).join(' ');
      return { nics: [], config: { ...c, kernel: r.kernel, ...(r.ramdisk ? { ramdisk: r.ramdisk } : {}), cmdline } };
    },
  };
}
