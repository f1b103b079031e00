/**
 * The source's half of a postcopy migration (`xeno migrate --live --postcopy`), and the checks of a
 * request's stream tuning. Policy: QEMU copies the RAM by precopy first; when its first full pass
 * is done (dirty-sync-count 2) and it has still not converged, the source asks for the switch
 * (migrate-start-postcopy). Once QEMU says `postcopy-active` the guest has stopped here: the target
 * is told (`postcopy`), runs the guest while the remaining pages arrive (faulted in on demand,
 * pushed in the background) and answers `running`. A guest that converges in the first pass never
 * switches. Both QEMUs' streams stay inside the session's TLS-PSK (main channel and return path).
 */
import type { Logger } from 'pino';
import { XenoError, errorMessage } from '../common/errors.js';
import type { Vm } from '../hypervisor/backend.js';
import type { Channel } from './channel.js';
import { MAX_PARALLEL, POSTCOPY_MULTIFD } from './protocol.js';
import { DEFAULT_DOWNTIME_MS, type MigrationTuning, type QueryMigrate } from './qemu-side.js';

/** The request's tuning checked (4xx before anything is touched) and the defaults applied. */
export function checkRequestTuning(req: { postcopy?: boolean; parallel?: number; autoConverge?: boolean; maxDowntimeMs?: number }, live: boolean): MigrationTuning {
  const parallel = req.parallel ?? 1;
  if (!Number.isInteger(parallel) || parallel < 1 || parallel > MAX_PARALLEL) throw new XenoError('BAD_REQUEST', `parallel must be an integer from 1 to ${MAX_PARALLEL}, not ${String(req.parallel)}`);
  if (req.postcopy && !live) throw new XenoError('BAD_REQUEST', 'postcopy is for a live migration (--live): offline, the guest is paused and its RAM copied once');
  if (req.postcopy && parallel > 1) throw new XenoError('BAD_REQUEST', POSTCOPY_MULTIFD);
  const maxDowntimeMs = req.maxDowntimeMs ?? DEFAULT_DOWNTIME_MS;
  if (!Number.isInteger(maxDowntimeMs) || maxDowntimeMs < 1 || maxDowntimeMs > 60_000) throw new XenoError('BAD_REQUEST', `maxDowntimeMs must be an integer from 1 to 60000, not ${String(req.maxDowntimeMs)}`);
  // QEMU 7.2 multifd with the vcpus throttled left the guest's memory corrupt on the target (kernel BUG in the guest, 3 runs of 3 here, none without the throttle).
  if (parallel > 1 && req.autoConverge === true) throw new XenoError('BAD_REQUEST', 'parallel (multifd) channels and auto-converge cannot be combined: with QEMU 7.2 the pair corrupted the guest\'s memory on the target in xeno\'s tests');
  return {
    postcopy: req.postcopy === true,
    parallel,
    // Postcopy bounds the migration without slowing the guest; a precopy needs the throttle to end (not multifd, above).
    autoConverge: req.autoConverge ?? (live && !req.postcopy && parallel === 1),
    maxDowntimeMs,
  };
}

export class PostcopySwitch {
  private asked = false;
  /** performance.now() when QEMU reported postcopy-active (the guest stopped here). */
  switchedAt?: number;
  private answer?: Promise<number>;
  private failure?: Error;

  constructor(
    private readonly vm: Vm,
    private readonly ch: Channel,
    private readonly enabled: boolean,
    private readonly log: Logger,
    private readonly name: string,
  ) {}

  get switched(): boolean {
    return this.switchedAt !== undefined;
  }

  /** Why the switch failed, for waitMigration's abort. */
  get error(): Error | undefined {
    return this.failure;
  }

  /** Called with every query-migrate answer of the source's QEMU. */
  onPoll(m: QueryMigrate): void {
    if (!this.enabled) return;
    if (!this.asked && m.status === 'active' && (m.ram?.['dirty-sync-count'] ?? 0) >= 2) {
      this.asked = true;
      this.log.info({ domain: this.name }, `migration of ${this.name}: the first pass did not converge (${Math.round((m.ram?.remaining ?? 0) / 1048576)} MiB dirty), switching to postcopy`);
      this.vm.command('migrate-start-postcopy').catch((e: unknown) => {
        this.failure = new XenoError('QEMU_ERROR', `QEMU refused to switch to postcopy: ${errorMessage(e)}`);
      });
    }
    if (m.status === 'postcopy-active' && this.switchedAt === undefined) {
      this.switchedAt = performance.now();
      this.ch.send({ t: 'postcopy' });
      this.answer = this.ch.recv('running', 60_000).then(() => performance.now());
      this.answer.catch(() => undefined);
    }
  }

  /** When the target said it runs the guest (undefined without a switch). */
  async running(): Promise<number | undefined> {
    return this.answer;
  }
}
