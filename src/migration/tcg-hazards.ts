/**
 * What QEMU 7.2 under TCG loses in a live migration, measured here with a 1-2 vcpu busybox guest
 * rewriting an 8 MiB tmpfs file in a loop and comparing it (cmp) after every copy:
 *  - precopy, one vcpu: clean (16 rounds of 16, xeno; 6 of 6, raw QEMU over plain TCP);
 *  - precopy, two vcpus (MTTCG): the kernel oopsed on the target in round 1, 2 runs of 2;
 *  - multifd (2 TLS channels), one vcpu: corrupt on the target in round 1 or 2, 2 runs of 2;
 *  - postcopy, one vcpu: corrupt, raw QEMU over plain TCP included (2 runs of 2) and xeno (1 of 2);
 *  - multifd, one vcpu, raw QEMU over plain TCP: clean (6 of 6): the TLS channels may be the trigger.
 * A copy done paused loses nothing, so a multi-vcpu or multifd live copy is done offline (and says so); postcopy has no
 * paused form and is refused. KVM is not concerned.
 */
import { XenoError } from '../common/errors.js';
import type { MigrationTuning } from './qemu-side.js';

/** Why a live copy of this guest is done paused under TCG, or undefined when it may run live. Throws for postcopy. */
export function tcgLiveHazard(accel: string, vcpus: number, tuning: MigrationTuning, live: boolean): string | undefined {
  if (accel !== 'tcg' || !live) return undefined;
  if (tuning.postcopy) {
    throw new XenoError('BAD_REQUEST', 'postcopy is not offered under TCG: QEMU 7.2 lost guest memory in a postcopy migration of a TCG guest (raw QEMU too); use -l without --postcopy (precopy), or a KVM host');
  }
  if (vcpus > 1) return `${vcpus} vcpus under TCG: a live copy of a multi-vcpu TCG guest loses memory written during it (QEMU 7.2)`;
  if ((tuning.parallel ?? 1) > 1) return `${tuning.parallel} channels under TCG: a live multifd copy of a TCG guest loses memory written during it (QEMU 7.2)`;
  return undefined;
}
