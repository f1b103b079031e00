/** The xeno-pool-* keys: all together (a pooled host) or none (standalone, exactly as before). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseDaemonConfig } from './daemon-config.js';

const FULL = `(xeno-pool-name prod)
(xeno-pool-host host1)
(xeno-pool-etcd 'https://10.0.0.1:2379 https://10.0.0.2:2379')
(xeno-pool-ca /etc/xeno/pool/ca.crt)
(xeno-pool-cert /etc/xeno/pool/host.crt)
(xeno-pool-key /etc/xeno/pool/host.key)
(xeno-pool-address 10.0.0.1)
`;

test('no pool keys: a standalone host, no pool in the config', () => {
  assert.equal(parseDaemonConfig('(xeno-accel tcg)').pool, undefined);
});

test('the pool keys make a pooled host, with the door port and lease TTL defaulted', () => {
  assert.deepEqual(parseDaemonConfig(FULL).pool, {
    name: 'prod', host: 'host1', etcd: ['https://10.0.0.1:2379', 'https://10.0.0.2:2379'],
    ca: '/etc/xeno/pool/ca.crt', cert: '/etc/xeno/pool/host.crt', key: '/etc/xeno/pool/host.key',
    address: '10.0.0.1', apiPort: 8003, leaseTtl: 10,
  });
  assert.equal(parseDaemonConfig(FULL + '(xeno-pool-lease-ttl 4)\n(xeno-pool-api-port 9003)').pool?.leaseTtl, 4);
});

test('a partial pool, plain-text etcd or a bad name is refused with where and what', () => {
  assert.throws(() => parseDaemonConfig('(xeno-pool-name prod)', 'x.sxp'), /x\.sxp:1:1: a pooled host needs every one of .*missing xeno-pool-host, xeno-pool-etcd/);
  assert.throws(() => parseDaemonConfig(FULL.replace('https://10.0.0.2', 'http://10.0.0.2')), /is not https:\/\/ADDRESS:PORT/);
  assert.throws(() => parseDaemonConfig(FULL.replace('host1)', 'Host_1)')), /invalid xeno-pool-host "Host_1"/);
  assert.throws(() => parseDaemonConfig(FULL.replace('(xeno-pool-address 10.0.0.1)', '(xeno-pool-address example.org)')), /not an IP address/);
  assert.throws(() => parseDaemonConfig(FULL + '(xeno-pool-lease-ttl 1)'), /between 2 and 3600/);
});
