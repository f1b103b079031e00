/**
 * Compact time series: a fixed-capacity ring of rows of numbers, stored column by column in one
 * Float64Array (no object per sample), and a two-tier series that keeps fine samples (1 s) for
 * minutes and folds them into coarse ones (1 min) kept for a day.
 */

/** How a column folds when samples are merged into a coarser step. */
export type Fold = 'last' | 'mean';

export class ColumnRing {
  private readonly data: Float64Array;
  private readonly cols: number;
  private start = 0;
  private count = 0;

  /** Column 0 is always the sample time (seconds since the epoch). */
  constructor(readonly capacity: number, columns: number) {
    this.cols = columns + 1;
    this.data = new Float64Array(capacity * this.cols);
  }

  get length(): number {
    return this.count;
  }

  push(t: number, values: ArrayLike<number>): void {
    const slot = (this.start + this.count) % this.capacity;
    if (this.count < this.capacity) this.count++;
    else this.start = (this.start + 1) % this.capacity;
    const o = slot * this.cols;
    this.data[o] = t;
    for (let i = 1; i < this.cols; i++) this.data[o + i] = values[i - 1] ?? NaN;
  }

  private offset(i: number): number {
    return ((this.start + i) % this.capacity) * this.cols;
  }

  timeAt(i: number): number {
    return this.data[this.offset(i)]!;
  }

  /** Row i (0 = oldest) as [t, ...values]. */
  row(i: number): number[] {
    const o = this.offset(i);
    return Array.from(this.data.subarray(o, o + this.cols));
  }

  oldestTime(): number | undefined {
    return this.count ? this.timeAt(0) : undefined;
  }

  newest(): number[] | undefined {
    return this.count ? this.row(this.count - 1) : undefined;
  }

  /** Index of the first row with t > since (binary search: times only grow). */
  firstAfter(since: number): number {
    let lo = 0;
    let hi = this.count;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.timeAt(mid) > since) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }
}

/** Fold rows ([t, ...values]) into one: the last row's time, each column by its fold. */
export function foldRows(rows: number[][], folds: readonly Fold[]): number[] {
  const last = rows[rows.length - 1]!;
  const out = [last[0]!];
  folds.forEach((f, c) => {
    if (f === 'last') out.push(last[c + 1]!);
    else {
      let s = 0;
      let n = 0;
      for (const r of rows) if (!Number.isNaN(r[c + 1]!)) (s += r[c + 1]!), n++;
      out.push(n ? s / n : NaN);
    }
  });
  return out;
}

/** Group rows by floor(t / step) and fold each group (rows must be in time order). */
export function downsample(rows: number[][], step: number, folds: readonly Fold[]): number[][] {
  if (step <= 0) return rows;
  const out: number[][] = [];
  let group: number[][] = [];
  let bucket = NaN;
  for (const r of rows) {
    const b = Math.floor(r[0]! / step);
    if (b !== bucket && group.length) {
      out.push(foldRows(group, folds));
      group = [];
    }
    bucket = b;
    group.push(r);
  }
  if (group.length) out.push(foldRows(group, folds));
  return out;
}

export interface TierSizes {
  /** Fine tier: step (s) and rows kept. */
  fineStep: number;
  fineRows: number;
  coarseStep: number;
  coarseRows: number;
}

/** 15 minutes at 1 s, 24 hours at 1 min. */
export const DEFAULT_TIERS: TierSizes = { fineStep: 1, fineRows: 900, coarseStep: 60, coarseRows: 1440 };

/** A fine ring plus a coarse ring fed by folding each finished coarse step of fine samples. */
export class TieredSeries {
  readonly fine: ColumnRing;
  readonly coarse: ColumnRing;
  private pending: number[][] = [];
  private pendingBucket = NaN;

  constructor(readonly folds: readonly Fold[], readonly tiers: TierSizes = DEFAULT_TIERS) {
    this.fine = new ColumnRing(tiers.fineRows, folds.length);
    this.coarse = new ColumnRing(tiers.coarseRows, folds.length);
  }

  push(t: number, values: ArrayLike<number>): void {
    this.fine.push(t, values);
    const b = Math.floor(t / this.tiers.coarseStep);
    if (b !== this.pendingBucket && this.pending.length) {
      const f = foldRows(this.pending, this.folds);
      this.coarse.push(f[0]!, f.slice(1));
      this.pending = [];
    }
    this.pendingBucket = b;
    this.pending.push([t, ...Array.from(values)]);
  }

  newest(): number[] | undefined {
    return this.fine.newest();
  }

  /**
   * Rows with t > since, at `step` seconds (0 = as stored). The fine tier answers when it still
   * holds `since` and the step is finer than the coarse one; else the coarse tier (plus the
   * current, unfinished minute folded).
   */
  query(since: number, step = 0): number[][] {
    const oldestFine = this.fine.oldestTime();
    const useFine = oldestFine !== undefined && step < this.tiers.coarseStep && (since >= oldestFine || this.coarse.length === 0);
    let rows: number[][];
    if (useFine) {
      rows = [];
      for (let i = this.fine.firstAfter(since); i < this.fine.length; i++) rows.push(this.fine.row(i));
    } else {
      rows = [];
      for (let i = this.coarse.firstAfter(since); i < this.coarse.length; i++) rows.push(this.coarse.row(i));
      if (this.pending.length) {
        const f = foldRows(this.pending, this.folds);
        if (f[0]! > since) rows.push(f);
      }
    }
    return step > (useFine ? this.tiers.fineStep : this.tiers.coarseStep) ? downsample(rows, step, this.folds) : rows;
  }
}
