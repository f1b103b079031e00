import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { XenoError } from '../common/errors.js';
import { skipIf } from '../../test/helpers/skips.js';
import {
  DomainCgroups,
  capToCpuMax,
  capToQuota,
  cgroupInstanceName,
  cgroupOfPid,
  detectCgroups,
  parseMounts,
  sharesToWeight,
  v2ToWeight,
  weightToShares,
  weightToV2,
  type CgroupLayout,
} from './cgroups.js';

/** Node starts its helper threads shortly after exec: wait for them. */
async function threadsOf(pid: number): Promise<number[]> {
  for (;;) {
    const tids = readdirSync(`/proc/${pid}/task`).map(Number);
    if (tids.length > 1) return tids;
    await new Promise((r) => setTimeout(r, 10));
  }
}


const tmpDirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'xeno-cg-'));
  tmpDirs.push(d);
  return d;
}
after(() => {
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});

const HYBRID_MOUNTINFO = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`;

function badRequest(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof XenoError && e.code === 'BAD_REQUEST' && re.test(e.message));
}

describe('weight and cap mappings', () => {
  it('maps Xen weights linearly onto shares and cpu.weight', () => {
    assert.equal(weightToShares(256), 1024);
    assert.equal(weightToShares(512), 2048);
    assert.equal(weightToShares(1), 4);
    assert.equal(weightToShares(65535), 262140);
    assert.equal(weightToV2(256), 100);
    assert.equal(weightToV2(512), 200);
    assert.equal(weightToV2(128), 50);
    assert.equal(weightToV2(1), 1);
    assert.equal(weightToV2(65535), 10000);
    assert.equal(sharesToWeight(1024), 256);
    assert.equal(v2ToWeight(100), 256);
  });

  it('maps caps onto CFS quotas', () => {
    assert.equal(capToQuota(0), -1);
    assert.equal(capToQuota(50), 50000);
    assert.equal(capToQuota(200), 200000);
    assert.equal(capToCpuMax(0), 'max 100000');
    assert.equal(capToCpuMax(50), '50000 100000');
  });

  it('rejects out-of-range values', () => {
    for (const w of [0, -1, 65536, 1.5, NaN]) badRequest(() => weightToShares(w), /weight/);
    for (const c of [-1, 2.5, NaN]) badRequest(() => capToQuota(c), /cap/);
  });
});

describe('detectCgroups', () => {
  it('parses mountinfo and /proc/mounts lines, with escapes', () => {
    const m = parseMounts('40 31 0:37 / /a\\040b rw - cgroup cgroup rw,cpu,cpuacct\ncgroup /x cgroup rw,cpu 0 0\n');
    assert.deepEqual(m, [
      { mountPoint: '/a b', fsType: 'cgroup', superOptions: ['rw', 'cpu', 'cpuacct'] },
      { mountPoint: '/x', fsType: 'cgroup', superOptions: ['rw', 'cpu'] },
    ]);
  });

  it('finds the v1 cpu hierarchy when cpu and cpuacct are separate (hybrid, unified without cpu)', () => {
    const root = tmp();
    mkdirSync(path.join(root, 'sys/fs/cgroup/unified'), { recursive: true });
    writeFileSync(path.join(root, 'sys/fs/cgroup/unified/cgroup.controllers'), 'hugetlb\n');
    const l = detectCgroups(HYBRID_MOUNTINFO, root);
    assert.equal(l.version, 1);
    assert.equal(l.cpuMount, path.join(root, 'sys/fs/cgroup/cpu'));
    assert.deepEqual(l.controllers, ['cpu']);
  });

  it('finds a combined cpu,cpuacct hierarchy, and never takes cpuacct or cpuset for cpu', () => {
    const text = `cgroup /sys/fs/cgroup/cpuset cgroup rw,nosuid,cpuset 0 0
cgroup /sys/fs/cgroup/cpuacct-only cgroup rw,cpuacct 0 0
cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,nodev,noexec,relatime,cpu,cpuacct 0 0
`;
    const l = detectCgroups(text, '/nonexistent');
    assert.equal(l.version, 1);
    assert.equal(l.cpuMount, '/nonexistent/sys/fs/cgroup/cpu,cpuacct');
    assert.deepEqual(l.controllers, ['cpu', 'cpuacct']);
  });

  it('prefers the unified hierarchy when it has the cpu controller', () => {
    const root = tmp();
    mkdirSync(path.join(root, 'cg'), { recursive: true });
    writeFileSync(path.join(root, 'cg/cgroup.controllers'), 'cpuset cpu io memory pids\n');
    const l = detectCgroups(`30 23 0:26 / /cg rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n`, root);
    assert.equal(l.version, 2);
    assert.equal(l.cpuMount, path.join(root, 'cg'));
  });

  it('says clearly when there is no cpu controller at all', () => {
    assert.throws(() => detectCgroups('proc /proc proc rw 0 0\n'), (e: unknown) => e instanceof XenoError && e.code === 'HOST_ERROR' && /cpu controller/.test(e.message));
  });

  it('reads this machine', () => {
    const l = detectCgroups();
    assert.ok(l.version === 1 || l.version === 2);
    assert.ok(existsSync(l.cpuMount), l.cpuMount);
  });
});

describe('DomainCgroups on a fake cgroup v2 tree', () => {
  it('enables +cpu down the tree and writes cpu.weight, cpu.max and cgroup.procs', async () => {
    const root = tmp();
    writeFileSync(path.join(root, 'cgroup.controllers'), 'cpu io memory\n');
    writeFileSync(path.join(root, 'cgroup.subtree_control'), 'memory\n');
    const layout = detectCgroups(`30 23 0:26 / ${root} rw - cgroup2 cgroup2 rw\n`);
    assert.equal(layout.version, 2);
    const cg = new DomainCgroups(layout, 'abc123');
    const dir = cg.create('web1');
    assert.equal(dir, path.join(root, 'xeno-abc123', 'web1'));
    // a fake file is overwritten rather than appended to: '+cpu' is what was written
    assert.equal(readFileSync(path.join(root, 'cgroup.subtree_control'), 'utf8'), '+cpu');
    assert.equal(readFileSync(path.join(root, 'xeno-abc123', 'cgroup.subtree_control'), 'utf8'), '+cpu');
    cg.setWeight('web1', 512);
    assert.equal(readFileSync(path.join(dir, 'cpu.weight'), 'utf8'), '200');
    cg.setCap('web1', 50);
    assert.equal(readFileSync(path.join(dir, 'cpu.max'), 'utf8'), '50000 100000');
    assert.deepEqual(cg.settings('web1'), { weight: 512, cap: 50 });
    cg.setCap('web1', 0);
    assert.equal(readFileSync(path.join(dir, 'cpu.max'), 'utf8'), 'max 100000');
    await cg.addPid('web1', 4242);
    assert.equal(readFileSync(path.join(dir, 'cgroup.procs'), 'utf8'), '4242');
    // threads: v2 moves the owning process (our own thread id -> our pid)
    cg.addThreads('web1', [process.pid]);
    assert.equal(readFileSync(path.join(dir, 'cgroup.procs'), 'utf8'), String(process.pid));
    // an already enabled controller is left alone
    writeFileSync(path.join(root, 'cgroup.subtree_control'), 'cpu memory\n');
    cg.create('web2');
    assert.equal(readFileSync(path.join(root, 'cgroup.subtree_control'), 'utf8'), 'cpu memory\n');
  });

  it('keeps two instances apart and refuses unsafe group names', () => {
    const layout: CgroupLayout = { version: 2, cpuMount: '/sys/fs/cgroup', controllers: ['cpu'] };
    const a = new DomainCgroups(layout, cgroupInstanceName('/var/lib/xeno'));
    const b = new DomainCgroups(layout, cgroupInstanceName('/tmp/other-xeno'));
    assert.notEqual(a.pathOf('g'), b.pathOf('g'));
    assert.match(a.base, /^\/sys\/fs\/cgroup\/xeno-[0-9a-f]{10}$/);
    assert.equal(cgroupInstanceName('/var/lib/xeno'), cgroupInstanceName('/var/lib/xeno/'));
    for (const bad of ['..', '.', '', 'a/b', '.hidden']) badRequest(() => a.pathOf(bad), /safe directory name/);
    assert.throws(() => new DomainCgroups(layout, '../x'));
  });
});

describe('DomainCgroups on a fake cgroup v1 tree', () => {
  it('writes cpu.shares, the CFS period and quota, tasks and cgroup.procs', async () => {
    const root = tmp();
    const layout = detectCgroups(`cgroup ${root}/cpu,cpuacct cgroup rw,cpu,cpuacct 0 0\n`);
    const cg = new DomainCgroups(layout, 'i1');
    const dir = cg.create('db');
    assert.equal(dir, path.join(root, 'cpu,cpuacct', 'xeno-i1', 'db'));
    cg.setWeight('db', 128);
    assert.equal(readFileSync(path.join(dir, 'cpu.shares'), 'utf8'), '512');
    cg.setCap('db', 25);
    assert.equal(readFileSync(path.join(dir, 'cpu.cfs_period_us'), 'utf8'), '100000');
    assert.equal(readFileSync(path.join(dir, 'cpu.cfs_quota_us'), 'utf8'), '25000');
    assert.deepEqual(cg.settings('db'), { weight: 128, cap: 25 });
    cg.setCap('db', 0);
    assert.equal(readFileSync(path.join(dir, 'cpu.cfs_quota_us'), 'utf8'), '-1');
    cg.addThreads('db', [101, 102]);
    assert.equal(readFileSync(path.join(dir, 'tasks'), 'utf8'), '102'); // one write per thread id
    await cg.addPid('db', 100);
    assert.equal(readFileSync(path.join(dir, 'cgroup.procs'), 'utf8'), '100');
  });
});

// ---- the real thing, on whatever this machine has --------------------------------------------

function realLayout(): CgroupLayout | null {
  if (process.getuid?.() !== 0) return null;
  try {
    return detectCgroups();
  } catch {
    return null;
  }
}

function waitSpawn(cmd: string, args: string[]): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: 'ignore' });
    c.once('spawn', () => resolve(c));
    c.once('error', reject);
  });
}

function waitExit(c: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (c.exitCode !== null || c.signalCode !== null) resolve();
    else c.once('exit', () => resolve());
  });
}

describe('DomainCgroups on this host, for real', { skip: skipIf(!realLayout(), 'needs root and a cgroup cpu controller') }, () => {
  const layout = realLayout()!;
  const cg = new DomainCgroups(layout, cgroupInstanceName(tmp()));
  const children: ChildProcess[] = [];
  after(async () => {
    for (const c of children) c.kill('SIGKILL');
    await Promise.all(children.map(waitExit));
    await cg.removeAll();
    assert.ok(!existsSync(cg.base));
  });

  it('puts a process in its group, sets weight and cap, reads them back and removes the group', async () => {
    const sleeper = await waitSpawn('sleep', ['600']);
    children.push(sleeper);
    const dir = cg.create('g1');
    assert.ok(existsSync(dir));
    await cg.addPid('g1', sleeper.pid!);
    assert.equal(cgroupOfPid(layout, sleeper.pid!), dir);
    assert.deepEqual(cg.pids('g1'), [sleeper.pid]);

    cg.setWeight('g1', 512);
    cg.setCap('g1', 50);
    if (layout.version === 1) {
      assert.equal(readFileSync(path.join(dir, 'cpu.shares'), 'utf8').trim(), '2048');
      assert.equal(readFileSync(path.join(dir, 'cpu.cfs_quota_us'), 'utf8').trim(), '50000');
      assert.equal(readFileSync(path.join(dir, 'cpu.cfs_period_us'), 'utf8').trim(), '100000');
    } else {
      assert.equal(readFileSync(path.join(dir, 'cpu.weight'), 'utf8').trim(), '200');
      assert.equal(readFileSync(path.join(dir, 'cpu.max'), 'utf8').trim(), '50000 100000');
    }
    assert.deepEqual(cg.settings('g1'), { weight: 512, cap: 50 });
    cg.setCap('g1', 0);
    cg.setWeight('g1', 256);
    assert.deepEqual(cg.settings('g1'), { weight: 256, cap: 0 });

    sleeper.kill('SIGKILL');
    await waitExit(sleeper);
    await cg.remove('g1');
    assert.ok(!existsSync(dir));
    await cg.remove('g1'); // a missing group is fine
  });

  it('moves every thread of a multi-threaded process, and remove() evicts what is still inside', async () => {
    const proc = await waitSpawn(process.execPath, ['-e', 'setTimeout(() => {}, 600000)']);
    children.push(proc);
    const tids = await threadsOf(proc.pid!);
    const dir = cg.create('g2');
    if (layout.version === 1) {
      // one thread on its own through `tasks`: only that one moves
      const one = tids.find((t) => t !== proc.pid)!;
      cg.addThreads('g2', [one]);
      assert.equal(cgroupOfPid(layout, `${proc.pid}/task/${one}`), dir);
      assert.equal(cgroupOfPid(layout, proc.pid!), layout.cpuMount);
    }
    await cg.addPid('g2', proc.pid!);
    for (const tid of readdirSync(`/proc/${proc.pid}/task`)) {
      assert.equal(cgroupOfPid(layout, `${proc.pid}/task/${tid}`), dir);
    }
    await cg.remove('g2'); // still running: moved back to the root group, then removed
    assert.ok(!existsSync(dir));
    assert.equal(cgroupOfPid(layout, proc.pid!), layout.cpuMount);
  });
});
