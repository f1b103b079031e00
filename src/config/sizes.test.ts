import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { XenoError } from '../common/errors.js';
import { formatMemSize, parseMemSize } from './sizes.js';

function invalid(s: string | number, expected: RegExp): void {
  assert.throws(
    () => parseMemSize(s),
    (e: unknown) => {
      assert.ok(e instanceof XenoError);
      assert.equal(e.code, 'CONFIG_INVALID');
      assert.match(e.message, expected);
      return true;
    },
  );
}

describe('parseMemSize', () => {
  it('reads plain numbers as MiB', () => {
    assert.equal(parseMemSize(512), 512);
    assert.equal(parseMemSize('512'), 512);
    assert.equal(parseMemSize(' 512 '), 512);
    assert.equal(parseMemSize(0), 0);
  });

  it('reads every unit, in either case', () => {
    const cases: Array<[string, number]> = [
      ['512m', 512],
      ['512M', 512],
      ['512MB', 512],
      ['512MiB', 512],
      ['1g', 1024],
      ['1G', 1024],
      ['1GB', 1024],
      ['524288k', 512],
      ['524288K', 512],
      ['524288kb', 512],
      ['2t', 2 * 1024 * 1024],
      ['1073741824b', 1024],
      ['1073741824B', 1024],
      ['1.5g', 1536],
      ['0.5G', 512],
      ['1.0m', 1],
      ['0.25t', 256 * 1024],
      ['512 m', 512],
    ];
    for (const [s, mib] of cases) assert.equal(parseMemSize(s), mib, s);
  });

  it('rejects negatives, junk and sizes that are not whole MiB', () => {
    invalid(-1, /must not be negative/);
    invalid('-512', /must not be negative/);
    invalid('-1g', /must not be negative/);
    invalid(1.5, /not a whole number of MiB/);
    invalid('1.5m', /not a whole number of MiB/);
    invalid('1000k', /"1000k" is not a whole number of MiB/);
    invalid('1000000b', /not a whole number of MiB/);
    invalid('0.3g', /not a whole number of MiB/);
    invalid(Number.NaN, /invalid memory size/);
    invalid(Number.POSITIVE_INFINITY, /invalid memory size/);
    for (const junk of ['', 'lots', '512x', 'm', '1e3', '0x200', '1,5g', '1..5g', '5 g b', '512mm']) {
      invalid(junk, /invalid memory size/);
    }
    invalid('99999999999999999999t', /too large/);
  });
});

describe('formatMemSize', () => {
  it('uses the largest exact unit', () => {
    assert.equal(formatMemSize(512), '512m');
    assert.equal(formatMemSize(2048), '2g');
    assert.equal(formatMemSize(1024 * 1024), '1t');
    assert.equal(formatMemSize(1536), '1536m');
    for (const mib of [0, 1, 1024, 1536, 3 * 1024 * 1024]) assert.equal(parseMemSize(formatMemSize(mib)), mib);
  });
});
