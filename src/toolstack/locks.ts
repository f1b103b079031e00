/**
 * Serializes operations per domain: two QMP transactions on one domain never interleave.
 * Lock order: a domain's lock before 'host-memory', never the other way round (the one exception
 * is create, which locks the fresh id of the domain it makes, that nobody else can hold yet): one
 * domain's long operation then never holds up the host's creates. Long waits inside a domain's
 * lock run as toolstack long operations, so destroy can cancel them (long-ops.ts).
 */
export class KeyedLock {
  private readonly tails = new Map<number | string, Promise<unknown>>();

  async run<T>(key: number | string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = prev.then(() => mine);
    this.tails.set(key, tail);
    await prev;
    try {
      return await fn();
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }

  busy(key: number | string): boolean {
    return this.tails.has(key);
  }
}
