import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isLoopback, parseListenAddress } from './listen-address.js';

test('ADDRESS:PORT: IPv4, bracketed IPv6, and nothing else', () => {
  assert.deepEqual(parseListenAddress('0.0.0.0:9101'), { host: '0.0.0.0', port: 9101 });
  assert.deepEqual(parseListenAddress('[fe80::1]:80'), { host: 'fe80::1', port: 80 });
  for (const bad of ['9101', ':9101', 'host:9101', '::1:9101', '1.2.3.4:0', '1.2.3.4:65536', '1.2.3.4:9101;x']) {
    assert.throws(() => parseListenAddress(bad), (e: { code?: string }) => e.code === 'CONFIG_INVALID', bad);
  }
});

test('only loopback addresses go without a token', () => {
  for (const h of ['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1']) assert.equal(isLoopback(h), true, h);
  for (const h of ['0.0.0.0', '::', '10.0.0.1', '128.0.0.1', '::2']) assert.equal(isLoopback(h), false, h);
});
