import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DomainSample } from '../model/stats.js';
import { fieldWidths, header, row, vbdLines, vdevNumber, xentopState } from './top-format.js';

const sample = (over: Partial<DomainSample> = {}): DomainSample => ({
  t: 1, state: 'running', flags: '-b----', cpuSec: 12.7, cpuPct: 3.14, memTarget: 128 << 20, memActual: 128 << 20,
  maxmem: 256 << 20, vcpus: 2, nets: [], vbds: [], ...over,
});

test('a row lines up under xentop header, widths as xentop prints them', () => {
  const r = { id: 1, name: 'a-very-long-name', s: sample() };
  const w = fieldWidths([r]);
  const line = row(r, w, 1024 << 20);
  assert.equal(line.length, header(w).length);
  assert.equal(line.slice(0, 10), 'a-very-lon', 'NAME is %10.10s');
  assert.match(line, /^a-very-lon --b---         12    3\.1     131072   12\.5     262144      25\.0     2    0        0        0    0        0        0        0          0          0    0$/);
});

test('the counters columns widen to fit the largest value, as xentop adjust_field_widths', () => {
  const big = { id: 2, name: 'g', s: sample({ vbds: [{ vdev: 'xvda', rdBytes: 512 * 12_345_678_901, wrBytes: 0, rdReqs: 123_456_789, wrReqs: 0 }] }) };
  const w = fieldWidths([big]);
  assert.ok(header(w).endsWith(' VBDS   VBD_OO    VBD_RD   VBD_WR   VBD_RSECT  VBD_WSECT SSID'), header(w));
  const line = row(big, w, 1 << 30);
  assert.ok(line.includes(' 123456789 '), line);
  assert.ok(line.includes(' 12345678901 '), line);
  assert.equal(line.length, header(w).length);
});

test('state flags in xentop order dsbcpr, and the disk lines name Xen device numbers', () => {
  assert.equal(xentopState(sample({ flags: 'r-----' })), '-----r');
  assert.equal(xentopState(sample({ state: 'paused', flags: '--p---' })), '----p-');
  assert.equal(xentopState(sample({ state: 'shutdown', flags: '---s--' })), '-s----');
  assert.deepEqual(vdevNumber('xvdb'), [202, 16]);
  assert.deepEqual(vdevNumber('hdc'), [22, 0]);
  const [l] = vbdLines(sample({ vbds: [{ vdev: 'xvda', rdBytes: 1024, wrBytes: 512, rdReqs: 3, wrReqs: 1 }] }));
  assert.equal(l, 'VBD BlkBack 51712 [ca: 0]  OO:        0   RD:        3   WR:        1   RSECT:          2   WSECT:          1');
});
