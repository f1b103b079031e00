/**
 * QEMU runs unprivileged (the hardening issue: a guest escape must not be host root): its
 * process has the xeno-qemu user's uids and gids and no capability, cannot read a root-only file,
 * gets its disks through ACLs that are there while it runs and gone (the ACL exactly as before)
 * once it stops, opens a tap owned by that user; and the lifecycle still works: heartbeat,
 * re-adoption after kill -9 of xenod, save and restore through the run dir's sockets, destroy.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { processGone } from '../src/host/proc.js';
import { GUEST, TestDaemon, sleep } from './helpers/harness.js';

const execFileP = promisify(execFile);
const USER = 'xeno-qemu';

async function getfacl(file: string): Promise<string> {
  return (await execFileP('getfacl', ['-p', '--', file])).stdout;
}

/** The Uid:/Gid:/Groups:/CapEff: ... lines of /proc/PID/status. */
function status(pid: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
    const m = /^(\w+):\s*(.*)$/.exec(line);
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

/** Run `cmd` as the QEMU user (its uid, gid and groups, no capabilities): exit code and stderr. */
async function asQemuUser(cmd: string[]): Promise<{ code: number; stderr: string }> {
  try {
    await execFileP('setpriv', ['--reuid', USER, '--regid', USER, '--init-groups', '--inh-caps=-all', '--', ...cmd]);
    return { code: 0, stderr: '' };
  } catch (e) {
    const err = e as { code?: number; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : 1, stderr: err.stderr ?? '' };
  }
}

async function qemuPid(d: TestDaemon, name: string): Promise<number> {
  const info = await d.client.get<{ pid: number }>(`/v1/domains/${name}`);
  return info.pid;
}

/** The owner uid of a tap in the daemon's network namespace (`ip -d` prints `user NAME`). */
async function tapOwner(d: TestDaemon, ifname: string): Promise<string | undefined> {
  const { stdout } = await execFileP('ip', ['-n', d.netns!, '-d', '-j', 'link', 'show', 'dev', ifname]);
  const [link] = JSON.parse(stdout) as Array<{ linkinfo?: { info_data?: { user?: string | number } } }>;
  const u = link?.linkinfo?.info_data?.user;
  return u === undefined ? undefined : String(u);
}

describe('QEMU runs as an unprivileged user', () => {
  const d = new TestDaemon({ isolated: true });
  let rwDisk: string;
  let roDisk: string;
  let secret: string;
  const aclBefore: Record<string, string> = {};

  before(async () => {
    rwDisk = path.join(d.dir, 'qu-rw.ext4');
    roDisk = path.join(d.dir, 'qu-ro.ext4');
    copyFileSync(GUEST.disk, rwDisk);
    copyFileSync(GUEST.disk, roDisk);
    // Root-only, as disk images usually are: QEMU may open them only through the ACL xenod sets.
    for (const f of [rwDisk, roDisk]) await execFileP('chmod', ['0600', f]);
    secret = path.join(d.dir, 'secret');
    writeFileSync(secret, 'root only\n', { mode: 0o600 });
    aclBefore.rw = await getfacl(rwDisk);
    aclBefore.ro = await getfacl(roDisk);
    await d.start();
  });
  after(() => d.cleanup());

  it('its QEMU has the user’s uids and gids, no capability, and cannot read a root-only file', async () => {
    const id = await d.createGuest('qu1', { disk: `[ 'file:${rwDisk},xvda,w', 'file:${roDisk},xvdb,r' ]`, vif: `[ '' ]` });
    await d.waitConsole('qu1', /heartbeat 2/, 120_000);
    const uid = (await execFileP('id', ['-u', USER])).stdout.trim();
    const gid = (await execFileP('id', ['-g', USER])).stdout.trim();
    const st = status(await qemuPid(d, 'qu1'));
    const uids = st.Uid!.split(/\s+/);
    const gids = st.Gid!.split(/\s+/);
    assert.equal(uids.length, 4);
    assert.deepEqual(uids, [uid, uid, uid, uid], `real, effective, saved and fs uid are ${USER}'s: ${st.Uid}`);
    assert.deepEqual(gids, [gid, gid, gid, gid], `all four gids are ${USER}'s group: ${st.Gid}`);
    assert.ok(uids.every((u) => u !== '0') && gids.every((g) => g !== '0'));
    assert.ok(!st.Groups!.split(/\s+/).includes('0'), `no root group among ${st.Groups}`);
    for (const k of ['CapInh', 'CapPrm', 'CapEff', 'CapAmb']) assert.equal(BigInt(`0x${st[k]}`), 0n, `${k} is empty: ${st[k]}`);
    assert.equal(st.NoNewPrivs, '1');
    assert.match(st.Seccomp ?? '', /^2$/, 'under -sandbox on');
    // What that uid can and cannot do on the host.
    assert.equal((await asQemuUser(['head', '-c', '1', rwDisk])).code, 0, 'its disk is readable by it (ACL)');
    const denied = await asQemuUser(['cat', secret]);
    assert.notEqual(denied.code, 0);
    assert.match(denied.stderr, /Permission denied/);
    assert.notEqual((await asQemuUser(['dd', 'status=none', 'conv=notrunc', 'count=0', `of=${roDisk}`])).code, 0, 'a read-only disk is not writable by it');
    assert.equal((await tapOwner(d, `vif${id}.0`)), USER, 'the tap is owned by the QEMU user');
  });

  it('its disks have an ACL for the user while it runs: rw for a w disk, r for an r disk', async () => {
    assert.match(await getfacl(rwDisk), new RegExp(`^user:${USER}:rw-$`, 'm'));
    assert.match(await getfacl(roDisk), new RegExp(`^user:${USER}:r--$`, 'm'));
  });

  it('is re-adopted after kill -9 of xenod, and its console still works', async () => {
    const pid = await qemuPid(d, 'qu1');
    const from = d.consoleLog('qu1').length;
    await d.stop('SIGKILL');
    await sleep(1000);
    assert.equal(processGone(pid), false);
    await d.start();
    assert.equal(await qemuPid(d, 'qu1'), pid);
    await d.waitConsole('qu1', /heartbeat \d+/, 120_000, from);
    assert.match(await d.guestRun('qu1', 'echo unprivileged-ok'), /unprivileged-ok/);
  });

  it('save and restore work through the run dir (save stream to xenod, restore stream into QEMU)', async () => {
    const file = path.join(d.dir, 'qu1.save');
    await d.ok(['save', 'qu1', file]);
    assert.equal(await getfacl(rwDisk), aclBefore.rw, 'a saved guest holds no ACL any more');
    const from = d.consoleLog('qu1').length;
    await d.ok(['restore', file]);
    await d.waitConsole('qu1', /heartbeat \d+/, 120_000, from);
    const st = status(await qemuPid(d, 'qu1'));
    assert.ok(st.Uid!.split(/\s+/).every((u) => u !== '0'), 'the restored QEMU is unprivileged too');
    assert.match(await getfacl(rwDisk), new RegExp(`^user:${USER}:rw-$`, 'm'));
  });

  it('after destroy, the disks’ ACLs are exactly what they were before', async () => {
    const pid = await qemuPid(d, 'qu1');
    await d.ok(['destroy', 'qu1']);
    assert.equal(processGone(pid), true);
    assert.equal(await getfacl(rwDisk), aclBefore.rw);
    assert.equal(await getfacl(roDisk), aclBefore.ro);
    assert.notEqual((await asQemuUser(['head', '-c', '1', rwDisk])).code, 0, 'the user lost its access');
  });
});
