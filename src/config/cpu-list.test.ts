import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { XenoError } from '../common/errors.js';
import { formatCpuList, normaliseCpuList, parseCpuList } from './cpu-list.js';

function invalid(fn: () => unknown, expected: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof XenoError);
    assert.equal(e.code, 'CONFIG_INVALID');
    assert.match(e.message, expected);
    return true;
  });
}

describe('parseCpuList', () => {
  it('expands cpus, ranges, exclusions and all', () => {
    assert.deepEqual(parseCpuList('all', 4), [0, 1, 2, 3]);
    assert.deepEqual(parseCpuList('0-3,5,^1', 8), [0, 2, 3, 5]);
    assert.deepEqual(parseCpuList('^1,0-3'), [0, 2, 3]);
    assert.deepEqual(parseCpuList('0,1'), [0, 1]);
    assert.deepEqual(parseCpuList(' 3 , 1 , 2-2 '), [1, 2, 3]);
    assert.deepEqual(parseCpuList('all,^0', 4), [1, 2, 3]);
    assert.deepEqual(parseCpuList('0-7,^2-5'), [0, 1, 6, 7]);
    assert.deepEqual(parseCpuList('2,2,2'), [2]);
  });

  it('rejects malformed lists', () => {
    for (const bad of ['', ' ', 'x', '1-', '-1', '1,,2', '1-2-3', 'al', '0x1', '1.5', 'nodes:0']) {
      invalid(() => parseCpuList(bad, 8), /CPU list/);
    }
    invalid(() => parseCpuList('3-1'), /range 3-1 is backwards/);
    invalid(() => parseCpuList('^1', 4), /selects no CPU/);
    invalid(() => parseCpuList('0-1,^0-1', 4), /selects no CPU/);
    invalid(() => parseCpuList('all'), /"all" needs the number of host CPUs/);
    invalid(() => parseCpuList('99999'), /cpu 99999 is out of range/);
  });

  it('names the cpu that does not exist on the host', () => {
    invalid(() => parseCpuList('0-3,5', 4), /cpu 5 does not exist \(the host has 4 CPUs: 0-3\)/);
    invalid(() => parseCpuList('2-9', 4), /cpu 4 does not exist/);
    invalid(() => parseCpuList('1', 1), /cpu 1 does not exist \(the host has 1 CPU: 0-0\)/);
    assert.deepEqual(parseCpuList('0-3', 4), [0, 1, 2, 3]);
  });
});

describe('normaliseCpuList', () => {
  it('checks syntax without the host size and respells canonically', () => {
    assert.equal(normaliseCpuList(' 0 - 3 , 5,^ 1 '), '0-3,5,^1');
    assert.equal(normaliseCpuList('all'), 'all');
    assert.equal(normaliseCpuList('2-2'), '2');
    invalid(() => normaliseCpuList('^1'), /only excludes/);
    invalid(() => normaliseCpuList('0-'), /bad item "0-"/);
  });
});

describe('formatCpuList', () => {
  it('prints any cpu for the whole host and compact ranges otherwise', () => {
    assert.equal(formatCpuList([0, 1, 2, 3], 4), 'any cpu');
    assert.equal(formatCpuList([3, 2, 1, 0], 4), 'any cpu');
    assert.equal(formatCpuList([0, 1, 2, 3, 5], 8), '0-3,5');
    assert.equal(formatCpuList([0, 2, 4, 5, 6, 9], 16), '0,2,4-6,9');
    assert.equal(formatCpuList([1], 2), '1');
    assert.equal(formatCpuList([], 2), '');
    assert.equal(formatCpuList(parseCpuList('0-3,5,^1', 8), 8), '0,2-3,5');
  });
});
