/**
 * `xeno top`'s table, laid out byte for byte as xentop's (xen tools/xentop/xentop.c): the same
 * fields, headers and printf widths, the counters' columns widening to fit as xentop's do, the
 * state as xentop's six flags in its order `dsbcpr`.
 */
import type { DomainSample, HostSample } from '../model/stats.js';

export interface TopRow {
  id: number;
  name: string;
  s: DomainSample;
}

const KB = 1024;
const tot = (s: DomainSample, f: (n: DomainSample['nets'][number]) => number) => s.nets.reduce((a, n) => a + f(n), 0);
const totV = (s: DomainSample, f: (n: DomainSample['vbds'][number]) => number) => s.vbds.reduce((a, n) => a + f(n), 0);
const SECTOR = 512;

const netTxK = (s: DomainSample) => Math.floor(tot(s, (n) => n.txBytes) / KB);
const netRxK = (s: DomainSample) => Math.floor(tot(s, (n) => n.rxBytes) / KB);
const vbdRd = (s: DomainSample) => totV(s, (v) => v.rdReqs);
const vbdWr = (s: DomainSample) => totV(s, (v) => v.wrReqs);
const vbdRsect = (s: DomainSample) => Math.floor(totV(s, (v) => v.rdBytes) / SECTOR);
const vbdWsect = (s: DomainSample) => Math.floor(totV(s, (v) => v.wrBytes) / SECTOR);
const curMem = (s: DomainSample) => s.memActual ?? s.memTarget;

/** xentop's flags, in its order: dying, shutdown, blocked, crashed, paused, running. */
export function xentopState(s: DomainSample): string {
  const on = {
    d: s.state === 'dying',
    s: s.state === 'shutdown',
    b: s.flags.includes('b'),
    c: s.state === 'crashed',
    p: s.state === 'paused',
    r: s.flags.includes('r'),
  };
  return (Object.keys(on) as (keyof typeof on)[]).map((k) => (on[k] ? k : '-')).join('');
}

const pad = (v: string | number, w: number) => String(v).padStart(w);
const fixed = (v: number, w: number) => v.toFixed(1).padStart(w);

interface Field {
  header: string;
  width: number;
  /** Columns whose width grows with the largest value (xentop's adjust_field_widths). */
  grows?: (s: DomainSample) => number;
  cell: (r: TopRow, w: number, totalMem: number) => string;
  /** Sort key: larger first, except the name. */
  key?: (r: TopRow) => number | string;
}

export const FIELDS: Field[] = [
  { header: 'NAME', width: 10, cell: (r) => r.name.slice(0, 10).padStart(10), key: (r) => r.name.toLowerCase() },
  { header: 'STATE', width: 6, cell: (r) => xentopState(r.s), key: (r) => xentopState(r.s) },
  { header: 'CPU(sec)', width: 10, cell: (r) => pad(Math.floor(r.s.cpuSec), 10), key: (r) => r.s.cpuSec },
  { header: 'CPU(%)', width: 6, cell: (r) => fixed(r.s.cpuPct ?? 0, 6), key: (r) => r.s.cpuPct ?? 0 },
  { header: 'MEM(k)', width: 10, cell: (r) => pad(Math.floor(curMem(r.s) / KB), 10), key: (r) => curMem(r.s) },
  { header: 'MEM(%)', width: 6, cell: (r, _w, t) => fixed((curMem(r.s) / t) * 100, 6), key: (r) => curMem(r.s) },
  { header: 'MAXMEM(k)', width: 10, cell: (r) => pad(Math.floor(r.s.maxmem / KB), 10), key: (r) => r.s.maxmem },
  { header: 'MAXMEM(%)', width: 9, cell: (r, _w, t) => fixed((r.s.maxmem / t) * 100, 9), key: (r) => r.s.maxmem },
  { header: 'VCPUS', width: 5, cell: (r) => pad(r.s.vcpus, 5), key: (r) => r.s.vcpus },
  { header: 'NETS', width: 4, cell: (r) => pad(r.s.nets.length, 4), key: (r) => r.s.nets.length },
  { header: 'NETTX(k)', width: 8, grows: netTxK, cell: (r, w) => pad(netTxK(r.s), w), key: (r) => netTxK(r.s) },
  { header: 'NETRX(k)', width: 8, grows: netRxK, cell: (r, w) => pad(netRxK(r.s), w), key: (r) => netRxK(r.s) },
  { header: 'VBDS', width: 4, cell: (r) => pad(r.s.vbds.length, 4), key: (r) => r.s.vbds.length },
  { header: 'VBD_OO', width: 8, cell: () => pad(0, 8) }, // QEMU never blocks a request for lack of ring space
  { header: 'VBD_RD', width: 8, grows: vbdRd, cell: (r, w) => pad(vbdRd(r.s), w), key: (r) => vbdRd(r.s) },
  { header: 'VBD_WR', width: 8, grows: vbdWr, cell: (r, w) => pad(vbdWr(r.s), w), key: (r) => vbdWr(r.s) },
  { header: 'VBD_RSECT', width: 10, grows: vbdRsect, cell: (r, w) => pad(vbdRsect(r.s), w), key: (r) => vbdRsect(r.s) },
  { header: 'VBD_WSECT', width: 10, grows: vbdWsect, cell: (r, w) => pad(vbdWsect(r.s), w), key: (r) => vbdWsect(r.s) },
  { header: 'SSID', width: 4, cell: () => pad(0, 4) },
];

/** The fields `s` cycles through, as xentop's sort order (the ones with a key). */
export const SORTABLE = FIELDS.map((f, i) => (f.key ? i : -1)).filter((i) => i >= 0);

/** xentop's INT_FIELD_WIDTH(n + 1): the digits of n + 1. */
const digits = (n: number) => Math.floor(Math.log10(n + 1)) + 1;

export function fieldWidths(rows: readonly TopRow[]): number[] {
  return FIELDS.map((f) => Math.max(f.width, ...rows.map((r) => (f.grows ? digits(f.grows(r.s)) : 0))));
}

export function header(widths: readonly number[]): string {
  return FIELDS.map((f, i) => f.header.padStart(widths[i]!)).join(' ');
}

export function row(r: TopRow, widths: readonly number[], totalMem: number): string {
  return FIELDS.map((f, i) => f.cell(r, widths[i]!, totalMem)).join(' ');
}

export function sortRows(rows: TopRow[], field: number): TopRow[] {
  const key = FIELDS[field]?.key;
  if (!key) return rows;
  return [...rows].sort((a, b) => {
    const ka = key(a);
    const kb = key(b);
    if (typeof ka === 'string' || typeof kb === 'string') return String(ka).localeCompare(String(kb));
    return kb - ka || a.id - b.id;
  });
}

/** xentop's -n lines, one per vif (xeno counts no errors or drops: 0). */
export function netLines(s: DomainSample): string[] {
  const n8 = (v: number) => pad(v, 8);
  return s.nets.map(
    (n, i) => `Net${i} RX: ${n8(n.rxBytes)}bytes ${n8(n.rxPackets)}pkts ${n8(0)}err ${n8(0)}drop  TX: ${n8(n.txBytes)}bytes ${n8(n.txPackets)}pkts ${n8(0)}err ${n8(0)}drop`,
  );
}

/** Xen's device number of a vdev name (xvda = 202:0, sda = 8:0, hda = 3:0, hdc = 22:0). */
export function vdevNumber(vdev: string): [number, number] {
  const m = /^(xvd|sd|hd)([a-z])$/.exec(vdev);
  if (!m) return [0, 0];
  const idx = m[2]!.charCodeAt(0) - 97;
  if (m[1] === 'hd') return [idx < 2 ? 3 : 22, (idx % 2) * 64];
  return [m[1] === 'xvd' ? 202 : 8, idx * 16];
}

/** xentop's -x lines, one per disk. */
export function vbdLines(s: DomainSample): string[] {
  return s.vbds.map((v) => {
    const [maj, min] = vdevNumber(v.vdev);
    const dev = (maj << 8) | min;
    const details = `[${maj.toString(16).padStart(2)}:${min.toString(16).padStart(2)}] `;
    return `VBD BlkBack ${pad(dev, 4)} ${details} OO: ${pad(0, 8)}   RD: ${pad(v.rdReqs, 8)}   WR: ${pad(v.wrReqs, 8)}   RSECT: ${pad(Math.floor(v.rdBytes / SECTOR), 10)}   WSECT: ${pad(Math.floor(v.wrBytes / SECTOR), 10)}`;
  });
}

/** The three summary lines xentop prints above the table (interactive mode). */
export function summary(rows: readonly TopRow[], host: HostSample, version: string, cpus: { n: number; mhz: number }, now: Date): string[] {
  const c = { r: 0, b: 0, p: 0, cr: 0, d: 0, s: 0 };
  for (const r of rows) {
    const st = xentopState(r.s);
    if (st.includes('r')) c.r++;
    else if (st.includes('b')) c.b++;
    else if (st.includes('p')) c.p++;
    else if (st.includes('s')) c.s++;
    else if (st.includes('c')) c.cr++;
    else if (st.includes('d')) c.d++;
  }
  const k = (b: number) => Math.floor(b / KB);
  const time = now.toTimeString().slice(0, 8);
  return [
    `xeno top - ${time}   xeno ${version}   host CPU ${(host.cpuPct ?? 0).toFixed(1)}%`,
    `${rows.length} domains: ${c.r} running, ${c.b} blocked, ${c.p} paused, ${c.cr} crashed, ${c.d} dying, ${c.s} shutdown `,
    `Mem: ${k(host.totalMem)}k total, ${k(host.totalMem - host.freeMem)}k used, ${k(host.freeMem)}k free    CPUs: ${cpus.n} @ ${cpus.mhz}MHz`,
  ];
}
