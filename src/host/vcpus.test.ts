import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { hostCpuCount, setThreadAffinity } from './cpus.js';
import { VCPU_LIST_HEADER, formatVcpuList, vcpuRows } from './vcpus.js';

describe('formatVcpuList', () => {
  it('prints the xm vcpu-list table', () => {
    const text = formatVcpuList([
      { name: 'Domain-0', id: 0, vcpu: 0, cpu: 1, state: 'r--', time: 11794.26, affinity: 'any cpu' },
      { name: 'web1', id: 3, vcpu: 0, cpu: 0, state: '-b-', time: 2.04, affinity: '0-1' },
      { name: 'web1', id: 3, vcpu: 1, cpu: null, state: '--p', time: 0, affinity: '1,3' },
    ]);
    assert.equal(
      text,
      'Name                                ID  VCPU   CPU State   Time(s) CPU Affinity\n' +
        'Domain-0                             0     0     1   r--   11794.3 any cpu\n' +
        'web1                                 3     0     0   -b-       2.0 0-1\n' +
        'web1                                 3     1     -   --p       0.0 1,3\n',
    );
    assert.equal(VCPU_LIST_HEADER.indexOf('ID'), 36);
    assert.equal(formatVcpuList([]), VCPU_LIST_HEADER + '\n');
  });

  it('does not cut long names (the columns shift, as in xm)', () => {
    const name = 'a-very-long-domain-name-of-40-characters';
    const line = formatVcpuList([{ name, id: 12, vcpu: 0, cpu: 0, state: 'r--', time: 1, affinity: 'any cpu' }]).split('\n')[1]!;
    assert.equal(line, `${name}    12     0     0   r--       1.0 any cpu`);
  });
});

/** Node starts its helper threads shortly after exec: wait for them. */
async function threadsOf(pid: number): Promise<number[]> {
  for (;;) {
    const tids = readdirSync(`/proc/${pid}/task`).map(Number);
    if (tids.length > 1) return tids;
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('vcpuRows on real threads', () => {
  let child: ChildProcess | undefined;
  after(() => child?.kill('SIGKILL'));

  it('reads cpu, state, time and affinity of each thread from /proc', async () => {
    child = await new Promise<ChildProcess>((resolve, reject) => {
      // a busy thread of its own: the main thread spins
      const c = spawn(process.execPath, ['-e', 'for(;;){}'], { stdio: 'ignore' });
      c.once('spawn', () => resolve(c));
      c.once('error', reject);
    });
    const pid = child.pid!;
    await threadsOf(pid);
    const other = readdirSync(`/proc/${pid}/task`).map(Number).find((t) => t !== pid)!;
    const n = hostCpuCount();
    await setThreadAffinity(other, [0]);
    // let the spinner accumulate a little CPU time (no assertion on how much)
    await new Promise((r) => setTimeout(r, 300));
    const rows = vcpuRows('busy', 7, pid, [{ index: 1, threadId: other }, { index: 0, threadId: pid }], n, { expected: [0, 1, 2] });
    assert.equal(rows.length, 3);
    assert.deepEqual(rows.map((r) => r.vcpu), [0, 1, 2]);
    const [v0, v1, v2] = rows as [(typeof rows)[0], (typeof rows)[0], (typeof rows)[0]];
    assert.equal(v0.name, 'busy');
    assert.equal(v0.id, 7);
    assert.ok(v0.cpu !== null && v0.cpu >= 0 && v0.cpu < n);
    assert.ok(v0.time > 0);
    assert.equal(v0.state, 'r--'); // spinning
    assert.equal(v0.affinity, 'any cpu');
    assert.equal(v1.affinity, n === 1 ? 'any cpu' : '0');
    assert.deepEqual(v1.cpus, [0]);
    assert.equal(v1.state, '-b-'); // a sleeping helper thread
    assert.equal(v2.cpu, null);
    assert.equal(v2.state, '--p');
    const paused = vcpuRows('busy', 7, pid, [{ index: 0, threadId: pid }], n, { paused: true });
    assert.equal(paused[0]!.state, '--p');
  });
});
