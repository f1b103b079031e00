/**
 * Long operations on a domain (a save, vcpu-set's wait for an unplug, network-detach, mem-set's
 * wait, a migration) and their cancellation by destroy. Each runs with an AbortSignal it checks at
 * every wait; destroy aborts them all, then takes the domain's lock, which they release promptly
 * once cancelled. A long operation that starts while a destroy is on its way is refused at once.
 */
import { XenoError } from '../common/errors.js';

interface LongOp {
  kind: string;
  ctl: AbortController;
}

/** The error a cancelled operation ends with (signal.reason). */
export function cancelledError(kind: string, why: string): XenoError {
  return new XenoError('BAD_STATE', `${kind} cancelled: ${why}`, { cancelled: true });
}

export function isCancelled(e: unknown): boolean {
  return e instanceof XenoError && e.details?.cancelled === true;
}

/** Throws the signal's reason if it was aborted. */
export function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted) throw signal.reason;
}

/** Resolves when the signal is aborted (never otherwise); `dispose` forgets the listener. */
export function whenAborted(signal: AbortSignal): { promise: Promise<'aborted'>; dispose: () => void } {
  let dispose = () => {};
  const promise = new Promise<'aborted'>((resolve) => {
    if (signal.aborted) return resolve('aborted');
    const on = () => resolve('aborted');
    signal.addEventListener('abort', on, { once: true });
    dispose = () => signal.removeEventListener('abort', on);
  });
  return { promise, dispose };
}

/** `p`, or 'aborted' as soon as the signal is. */
export async function unlessAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T | 'aborted'> {
  const a = whenAborted(signal);
  try {
    return await Promise.race([p, a.promise]);
  } finally {
    a.dispose();
  }
}

/** A sleep that ends early (false) when the signal is aborted. */
export async function sleepUnlessAborted(ms: number, signal: AbortSignal): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const r = await unlessAborted(new Promise<void>((res) => (timer = setTimeout(res, ms))), signal);
  clearTimeout(timer);
  return r !== 'aborted';
}

export class LongOperations {
  private readonly ops = new Map<number, Set<LongOp>>();
  /** Domains a destroy is on its way for: new long operations are refused. */
  private readonly doomed = new Map<number, { why: string; n: number }>();

  async run<T>(id: number, kind: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const doomed = this.doomed.get(id);
    if (doomed) throw cancelledError(kind, doomed.why);
    const op: LongOp = { kind, ctl: new AbortController() };
    let set = this.ops.get(id);
    if (!set) this.ops.set(id, (set = new Set()));
    set.add(op);
    try {
      return await fn(op.ctl.signal);
    } finally {
      set.delete(op);
      if (!set.size && this.ops.get(id) === set) this.ops.delete(id);
    }
  }

  /** Kinds of the long operations running on a domain. */
  running(id: number): string[] {
    return [...(this.ops.get(id) ?? [])].map((o) => o.kind);
  }

  /**
   * Abort every long operation of the domain and refuse new ones until `release`; returns the
   * kinds aborted.
   */
  doom(id: number, why: string): { aborted: string[]; release: () => void } {
    const d = this.doomed.get(id) ?? { why, n: 0 };
    d.n++;
    this.doomed.set(id, d);
    const aborted: string[] = [];
    for (const op of this.ops.get(id) ?? []) {
      if (op.ctl.signal.aborted) continue;
      aborted.push(op.kind);
      op.ctl.abort(cancelledError(op.kind, why));
    }
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      if (--d.n === 0 && this.doomed.get(id) === d) this.doomed.delete(id);
    };
    return { aborted, release };
  }
}
