/**
 * What `xeno migrate` shows while it runs, from xenod's NDJSON progress lines: on a terminal a bar
 * for the disks' mirror (--copy-storage) then one for the RAM; elsewhere (logs, scripts) one line on
 * stderr when the mirror starts and one when the disks are in sync, so a long copy is never silent.
 */
import type { MigrateProgress } from '../../migration/client.js';
import { ProgressView } from './save-restore.js';

const MiB = 1024 * 1024;
const mib = (b: number) => `${(b / MiB).toFixed(1)} MiB`;

export class MigrateProgressView {
  private phase: 'start' | 'mirroring' | 'ram' = 'start';
  private bar?: ProgressView;
  private mirrorStart = 0;
  private lastMirror?: MigrateProgress;
  /** Serialises the bars' creation (cli-progress is imported on first use). */
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly dom: string,
    private readonly tty: boolean,
    private readonly write: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
  ) {}

  update(p: MigrateProgress): void {
    this.chain = this.chain.then(() => this.step(p)).catch(() => undefined);
  }

  private async step(p: MigrateProgress): Promise<void> {
    const mirroring = p.status === 'mirroring';
    if (mirroring && this.phase === 'start') {
      this.phase = 'mirroring';
      this.mirrorStart = Date.now();
      if (this.tty) this.bar = await ProgressView.create(`Copying the disks of ${this.dom}`);
      else this.write(`migrate ${this.dom}: mirroring its disks to the target: ${mib(p.total)} to copy`);
    }
    if (!mirroring && this.phase !== 'ram') {
      if (this.phase === 'mirroring') {
        this.bar?.stop();
        const m = this.lastMirror;
        this.write(`migrate ${this.dom}: the disks are in sync${m ? ` (${mib(m.total)} in ${((Date.now() - this.mirrorStart) / 1000).toFixed(1)} s)` : ''}; copying the RAM`);
      }
      this.phase = 'ram';
      if (this.tty) this.bar = await ProgressView.create(`Migrating ${this.dom}`);
    }
    if (mirroring) this.lastMirror = p;
    // QEMU's RAM total is the guest's whole RAM; transferred grows past it when pages are sent again
    this.bar?.update({ done: p.total - p.remaining, total: p.total }, mirroring ? '' : ` | sent ${mib(p.transferred)}`);
  }

  async stop(): Promise<void> {
    await this.chain;
    this.bar?.stop();
  }
}
