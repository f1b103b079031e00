import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { vncTarget } from './vnc.js';

describe('the VNC relay target', () => {
  it('reads the address QEMU reported, IPv4 or bracketed IPv6', () => {
    assert.deepEqual(vncTarget('127.0.0.1:5901'), { host: '127.0.0.1', port: 5901 });
    assert.deepEqual(vncTarget('[::1]:5900'), { host: '::1', port: 5900 });
  });
  it('refuses anything that is not an IP address and a port', () => {
    for (const bad of ['localhost:5900', '127.0.0.1', '127.0.0.1:0', '127.0.0.1:70000', '127.0.0.1:59a', '']) {
      assert.throws(() => vncTarget(bad), /unusable VNC address/, bad);
    }
  });
});
