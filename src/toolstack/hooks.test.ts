import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { composeHooks } from './hooks.js';
import type { DomainRecord } from './store.js';

describe('composeHooks', () => {
  it('afterStop runs every hook when one fails (the network still tears down), then reports the first failure', async () => {
    const ran: string[] = [];
    const hooks = composeHooks(
      { afterStop: async () => void ran.push('bootloader') },
      { afterStop: async () => { ran.push('acl'); throw new Error('cannot restore ACLs'); } },
      { afterStop: async () => { ran.push('runtime'); throw new Error('second failure'); } },
      { afterStop: async () => void ran.push('network') },
    );
    await assert.rejects(hooks.afterStop({ id: 1, name: 'web' } as DomainRecord), /cannot restore ACLs/);
    assert.deepEqual(ran, ['bootloader', 'acl', 'runtime', 'network']);
  });
});
