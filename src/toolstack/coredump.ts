/**
 * on_poweroff/on_reboot/on_crash = coredump-destroy | coredump-restart, as xl does them: the guest's
 * memory is dumped (QMP dump-guest-memory, an ELF core `crash`/gdb read) to
 * `<stateDir>/dump/<name>-<domid>-<time>.core` before the domain is destroyed or restarted.
 * QEMU stops guests on every shutdown and panic (-action ...=pause), so the memory is intact here.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Vm } from '../hypervisor/backend.js';
import { DOMAIN_NAME_RE } from '../model/domain-config.js';
import { XenoError } from '../common/errors.js';

/** Dumps can take long on a big guest under TCG: bounded generously, never forever. */
const DUMP_TIMEOUT_MS = 30 * 60_000;

export function dumpDir(stateDir: string): string {
  return path.join(stateDir, 'dump');
}

/** Writes the core file and returns its path. */
export async function dumpGuestMemory(vm: Vm, stateDir: string, dom: { id: number; name: string }): Promise<string> {
  // The name goes into a QMP protocol string: only validated domain names ever get there.
  if (!DOMAIN_NAME_RE.test(dom.name)) throw new XenoError('INTERNAL', `refusing a core file name from '${dom.name}'`);
  const dir = dumpDir(stateDir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const file = path.join(path.resolve(dir), `${dom.name}-${dom.id}-${stamp}.core`);
  await vm.command('dump-guest-memory', { paging: false, protocol: `file:${file}` }, DUMP_TIMEOUT_MS);
  return file;
}
