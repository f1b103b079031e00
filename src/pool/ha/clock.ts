/** The one clock of HA timing: monotonic milliseconds (never the wall clock, which can jump). */
import { performance } from 'node:perf_hooks';

export function monoMs(): number {
  return performance.now();
}
