/**
 * Host CPU lists as xl/xm write them (`cpus = "0-3,5,^1"`, `vcpu-pin DOM all 2-3`):
 * comma-separated items, each `all`, a cpu `N`, a range `N-M`, or an exclusion `^N` / `^N-M`.
 * Exclusions apply after all inclusions (so `^1,0-3` = `0-3,^1`), as in xm.
 */

import { XenoError } from '../common/errors.js';

/** Highest CPU number accepted when the host size is not known (sanity bound). */
export const MAX_CPU_NUMBER = 4095;

interface CpuItem {
  exclude: boolean;
  all: boolean;
  from: number;
  to: number;
}

function invalid(msg: string): XenoError {
  return new XenoError('CONFIG_INVALID', msg);
}

function parseItems(s: string): CpuItem[] {
  const text = s.trim();
  if (!text) throw invalid('empty CPU list (expected "all" or a list like "0-3,5,^1")');
  const items: CpuItem[] = [];
  for (const raw of text.split(',')) {
    const part = raw.trim();
    const m = /^(\^)?\s*(?:(all)|(\d+)(?:\s*-\s*(\d+))?)$/.exec(part);
    if (!m) {
      throw invalid(`invalid CPU list "${s}": bad item "${part}" (expected "all", N, N-M or ^N)`);
    }
    const exclude = m[1] !== undefined;
    if (m[2]) {
      items.push({ exclude, all: true, from: 0, to: 0 });
      continue;
    }
    const from = Number(m[3]);
    const to = m[4] !== undefined ? Number(m[4]) : from;
    if (to < from) throw invalid(`invalid CPU list "${s}": range ${from}-${to} is backwards`);
    for (const cpu of [from, to]) {
      if (cpu > MAX_CPU_NUMBER) throw invalid(`invalid CPU list "${s}": cpu ${cpu} is out of range`);
    }
    items.push({ exclude, all: false, from, to });
  }
  return items;
}

/**
 * Checks the syntax of a CPU list without knowing the host and returns it in canonical spelling
 * (items trimmed, joined by `,`). `all` stays `all`.
 */
export function normaliseCpuList(s: string): string {
  const items = parseItems(s);
  if (items.every((i) => i.exclude)) {
    throw invalid(`invalid CPU list "${s}": it only excludes CPUs and so selects none`);
  }
  return items
    .map((i) => (i.exclude ? '^' : '') + (i.all ? 'all' : i.from === i.to ? `${i.from}` : `${i.from}-${i.to}`))
    .join(',');
}

/**
 * Expands a CPU list to sorted CPU numbers. `all` needs `nrCpus` (the host's CPU count); when it is
 * given, CPUs >= nrCpus are errors naming the CPU.
 */
export function parseCpuList(s: string, nrCpus?: number): number[] {
  const items = parseItems(s);
  const set = new Set<number>();
  const excluded: CpuItem[] = [];
  for (const item of items) {
    if (nrCpus !== undefined && !item.all && item.to >= nrCpus) {
      const bad = item.from >= nrCpus ? item.from : nrCpus;
      throw invalid(
        `invalid CPU list "${s}": cpu ${bad} does not exist (the host has ${nrCpus} CPU${nrCpus === 1 ? '' : 's'}: 0-${nrCpus - 1})`,
      );
    }
    if (item.exclude) {
      excluded.push(item);
      continue;
    }
    if (item.all) {
      if (nrCpus === undefined) throw invalid(`CPU list "${s}": "all" needs the number of host CPUs`);
      for (let c = 0; c < nrCpus; c++) set.add(c);
    } else {
      for (let c = item.from; c <= item.to; c++) set.add(c);
    }
  }
  for (const item of excluded) {
    if (item.all) set.clear();
    else for (let c = item.from; c <= item.to; c++) set.delete(c);
  }
  if (set.size === 0) throw invalid(`invalid CPU list "${s}": it selects no CPU`);
  return [...set].sort((a, b) => a - b);
}

/** `any cpu` when the list covers every host CPU, otherwise the compact form `0-3,5`. */
export function formatCpuList(cpus: number[], nrCpus: number): string {
  const sorted = [...new Set(cpus)].sort((a, b) => a - b);
  if (nrCpus > 0 && sorted.length >= nrCpus && sorted[0] === 0 && sorted[nrCpus - 1] === nrCpus - 1) {
    return 'any cpu';
  }
  const parts: string[] = [];
  let i = 0;
  while (i < sorted.length) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    parts.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}
