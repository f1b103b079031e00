/**
 * The pool leader: etcd's election recipe on the host's ONE lease (so a host that loses its lease
 * loses its candidacy with it, in the same instant as its locks). Each candidate puts
 * `P leader/<host>` with its lease (create revision 0 compared: one key per host); the candidate
 * whose key has the LOWEST create revision leads. Leadership is re-read on every change under
 * `P leader/` (a watch) and every `pollMs` (a watch can be cut while etcd is unreachable).
 *
 * A leader's writes are guarded by `leaderGuard()` (its key's create revision compared in the same
 * txn): a deposed leader's late write fails instead of acting on stale belief.
 */
import { EventEmitter } from 'node:events';
import type { Lease, Namespace, Watcher } from 'etcd3';

export const LEADER_PREFIX = 'leader/';

export interface ElectionEvents {
  /** This host became leader (true) or stopped being it (false). */
  change: [leading: boolean];
}

export class LeaderElection extends EventEmitter<ElectionEvents> {
  private leading = false;
  private myRev?: string;
  private leaderName?: string;
  private watcher?: Watcher;
  private timer?: NodeJS.Timeout;
  private stopped = false;

  constructor(
    private readonly ns: Namespace,
    private readonly host: string,
    private readonly lease: () => Lease,
    private readonly pollMs = 1000,
  ) {
    super();
  }

  async start(): Promise<void> {
    this.watcher = await this.ns.watch().prefix(LEADER_PREFIX).create();
    this.watcher.on('put', () => void this.refresh());
    this.watcher.on('delete', () => void this.refresh());
    this.watcher.on('error', () => undefined);
    this.timer = setInterval(() => void this.refresh(), this.pollMs);
    await this.refresh();
  }

  isLeader(): boolean {
    return this.leading;
  }

  /** The current leader's host name, as last read. */
  leader(): string | undefined {
    return this.leaderName;
  }

  /** A compare for a leader's txn: my leader key is still the one I campaigned with. */
  leaderGuard(): { key: string; createRevision: number } | undefined {
    return this.leading && this.myRev ? { key: LEADER_PREFIX + this.host, createRevision: Number(this.myRev) } : undefined;
  }

  async stop(resign: boolean): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.watcher?.cancel().catch(() => undefined);
    if (resign && this.myRev) {
      const k = LEADER_PREFIX + this.host;
      await this.ns.if(k, 'Create', '==', Number(this.myRev)).then(this.ns.delete().key(k)).commit().catch(() => undefined);
    }
    this.set(false);
  }

  /** Campaigns (if our key is missing) and re-reads who leads. Failures leave leadership as read last. */
  async refresh(): Promise<void> {
    if (this.stopped) return;
    try {
      const key = LEADER_PREFIX + this.host;
      const lease = this.lease();
      const leaseId = await lease.grant();
      const own = (await this.ns.get(key).exec()).kvs[0];
      if (!own || own.lease !== leaseId) {
        // none, or left by an older lease of ours (it goes with that lease): campaign anew
        const r = await this.ns.if(key, 'Create', '==', 0).then(lease.put(key).value(this.host)).commit();
        if (!r.succeeded && own) await this.ns.if(key, 'Mod', '==', Number(own.mod_revision)).then(this.ns.delete().key(key)).commit();
      }
      const all = (await this.ns.getAll().prefix(LEADER_PREFIX).exec()).kvs;
      all.sort((a, b) => Number(a.create_revision) - Number(b.create_revision));
      const first = all[0];
      const mineNow = all.find((kv) => kv.value.toString() === this.host);
      this.myRev = mineNow && mineNow.lease === leaseId ? mineNow.create_revision : undefined;
      this.leaderName = first?.value.toString();
      this.set(!!first && first.value.toString() === this.host && this.myRev === first.create_revision);
    } catch {
      // etcd unreachable: keep what we knew; the HA loop refuses to act on a stale lease anyway
    }
  }

  private set(leading: boolean): void {
    if (leading === this.leading) return;
    this.leading = leading;
    this.emit('change', leading);
  }
}
