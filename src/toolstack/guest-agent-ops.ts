/**
 * What xenod does through a guest's agent (qemu-guest-agent) when one answers: onlining the vcpus
 * vcpu-set plugged (a hot-added CPU stays offline in a guest without a udev rule for it), offlining
 * before an unplug, fsfreeze around a save, the clock after a restore. Every call is best effort:
 * a guest without an agent behaves as before, and the result says whether the agent took part.
 */
import { errorMessage } from '../common/errors.js';
import type { GuestAgent } from '../hypervisor/qemu/guest-agent.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Brings the guest's online CPUs to `n`: waits (up to `waitMs`) for the guest to see the CPUs just
 * plugged, then onlines/offlines through guest-set-vcpus. Returns the guest's online count, or null
 * when no agent answers.
 */
export async function syncGuestVcpus(agent: GuestAgent, n: number, waitMs = 15_000): Promise<number | null> {
  if (!(await agent.ping(1500))) return null;
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      const seen = await agent.vcpus();
      if (seen.length >= n || Date.now() > deadline) {
        const online = await agent.setOnlineVcpus(n);
        if (online === n || Date.now() > deadline) return online;
      }
    } catch (e) {
      if (Date.now() > deadline) throw new Error(`the guest agent could not set ${n} online vcpus: ${errorMessage(e)}`);
    }
    await sleep(300);
  }
}

/** After a restore the guest's clock is as old as the save file: set it from the host's. */
export async function resyncGuestClock(agent: GuestAgent): Promise<boolean> {
  if (!(await agent.ping(3000))) return false;
  await agent.setTime();
  return true;
}
