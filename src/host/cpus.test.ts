import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync } from 'node:fs';
import os from 'node:os';
import { XenoError } from '../common/errors.js';
import { getThreadAffinity, hostCpuCount, setThreadAffinity } from './cpus.js';

/** Node starts its helper threads shortly after exec: wait for them. */
async function threadsOf(pid: number): Promise<number[]> {
  for (;;) {
    const tids = readdirSync(`/proc/${pid}/task`).map(Number);
    if (tids.length > 1) return tids;
    await new Promise((r) => setTimeout(r, 10));
  }
}


describe('host cpus', () => {
  const children: ChildProcess[] = [];
  after(() => {
    for (const c of children) c.kill('SIGKILL');
  });

  function sleeper(): Promise<ChildProcess> {
    return new Promise((resolve, reject) => {
      const c = spawn('sleep', ['600'], { stdio: 'ignore' });
      children.push(c);
      c.once('spawn', () => resolve(c));
      c.once('error', reject);
    });
  }

  it('counts the host CPUs', () => {
    const n = hostCpuCount();
    assert.ok(n >= 1);
    assert.equal(n, os.cpus().length);
  });

  it('pins a real thread and reads the affinity back', async () => {
    const c = await sleeper();
    const all = Array.from({ length: hostCpuCount() }, (_, i) => i);
    assert.deepEqual(getThreadAffinity(c.pid!), all);
    await setThreadAffinity(c.pid!, [0]);
    assert.deepEqual(getThreadAffinity(c.pid!), [0]);
    await setThreadAffinity(c.pid!, all);
    assert.deepEqual(getThreadAffinity(c.pid!), all);
  });

  it('pins one thread of a multi-threaded process, by thread id only', async () => {
    const c = await new Promise<ChildProcess>((resolve, reject) => {
      const p = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 600000)'], { stdio: 'ignore' });
      children.push(p);
      p.once('spawn', () => resolve(p));
      p.once('error', reject);
    });
    const tids = (await threadsOf(c.pid!)).filter((t) => t !== c.pid);
    assert.ok(tids.length >= 1);
    const all = Array.from({ length: hostCpuCount() }, (_, i) => i);
    const last = all[all.length - 1]!;
    await setThreadAffinity(tids[0]!, [last]);
    assert.deepEqual(getThreadAffinity(tids[0]!), [last]);
    assert.deepEqual(getThreadAffinity(c.pid!), all, 'the other threads keep their affinity');
  });

  it('reports bad input and missing threads clearly', async () => {
    await assert.rejects(setThreadAffinity(0, [0]), (e: unknown) => e instanceof XenoError && e.code === 'BAD_REQUEST');
    await assert.rejects(setThreadAffinity(process.pid, []), (e: unknown) => e instanceof XenoError && e.code === 'BAD_REQUEST');
    const c = await sleeper();
    await assert.rejects(setThreadAffinity(c.pid!, [4000]), (e: unknown) => e instanceof XenoError && e.code === 'HOST_ERROR' && /4000/.test(e.message));
    assert.throws(() => getThreadAffinity(2 ** 22 + 12345), (e: unknown) => e instanceof XenoError && e.code === 'HOST_ERROR');
  });
});
