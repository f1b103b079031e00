/**
 * The balloon's actual size of one QEMU, known without a QMP round trip per read. QEMU says each
 * change itself (BALLOON_CHANGE, at most one a second, the last one always sent), so the events
 * alone stay right; a query-balloon answer seeds the figure, and is kept only when no event came
 * between the question and the answer (an answer resolves after the events read with it, so its
 * figure may be the older one). What can change the size without an event (a migration stream or a
 * save file loaded, a reset) drops the figure; so does age, so that a case not thought of here is wrong for
 * at most 40 s. A sampler of 100 guests thus sends a few queries a tick (spread by a random age
 * limit), not 100.
 */
import type { QmpEvent } from './qmp.js';

const MAX_AGE_MS = 20_000;
/** Each figure's age limit is MAX_AGE_MS plus up to this much, drawn anew: guests created together must not all be asked again in one tick. */
const AGE_JITTER_MS = 20_000;
/** A QEMU without a balloon device (or one that did not answer) is asked again after this long. */
const RETRY_MS = 10_000;

type Query = (timeoutMs: number) => Promise<{ actual: number }>;

export class BalloonCache {
  private bytes?: number;
  private at = 0;
  private maxAge = MAX_AGE_MS;
  /** Bumped by every event that sets or drops the figure: an answer asked before one is not kept. */
  private generation = 0;
  private failedAt = -Infinity;
  private pending?: Promise<number | undefined>;

  constructor(private readonly query: Query) {}

  /** An event of this QEMU. */
  onEvent(e: QmpEvent): void {
    if (e.event === 'BALLOON_CHANGE' && typeof e.data.actual === 'number') {
      this.generation++;
      this.set(e.data.actual);
    } else if (e.event === 'RESUME' || e.event === 'RESET' || e.event === 'MIGRATION') this.forget();
  }

  /** A command sent to this QEMU: a load that will replace the balloon's state. */
  onCommand(cmd: string): void {
    if (cmd === 'migrate-incoming') this.forget();
  }

  /** Called as a query-balloon is sent, whoever asks: what to do with its answer. */
  expectAnswer(): (bytes: number) => void {
    const asked = this.generation;
    return (bytes) => {
      if (this.generation === asked) this.set(bytes);
    };
  }

  private set(bytes: number): void {
    this.bytes = bytes;
    this.at = performance.now();
    this.maxAge = MAX_AGE_MS + Math.random() * AGE_JITTER_MS;
  }

  forget(): void {
    this.generation++;
    this.bytes = undefined;
  }

  /** Bytes, from memory when fresh, else from one query (shared by concurrent readers); undefined without a balloon. */
  read(timeoutMs: number): Promise<number | undefined> {
    const now = performance.now();
    if (this.bytes !== undefined && now - this.at < this.maxAge) return Promise.resolve(this.bytes);
    if (now - this.failedAt < RETRY_MS) return Promise.resolve(undefined);
    this.pending ??= this.query(timeoutMs)
      .then(
        (b) => b.actual,
        () => {
          this.failedAt = performance.now();
          return undefined;
        },
      )
      .finally(() => (this.pending = undefined));
    return this.pending;
  }
}
