/**
 * What the README promises of the daemon as a whole, on real xenods: the socket's mode 0600; every
 * error code's HTTP status, each reached through a real request (INTERNAL, which no request can
 * reach on purpose, through the one error mapper); the accelerator in `xeno info` and the TCG
 * warning at `xeno create`; and memory accounting at its edge: with dom0-min-mem set so that exactly
 * two guests fit, a third create, a restore and a mem-max one MiB over the edge are refused, and
 * admitted once there is room; three creates issued at once start two and refuse one.
 */
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ApiError } from '../src/client/client.js';
import { ERROR_CATALOGUE, XenoError, type ErrorCode } from '../src/common/errors.js';
import { buildApp } from '../src/daemon/app.js';
import type { DaemonContext } from '../src/daemon/context.js';
import type { HostInfo } from '../src/model/api.js';
import { GUEST, REPO, TestDaemon, guestCfg, measureGuestCharge } from './helpers/harness.js';

const info = (d: TestDaemon) => d.client.get<HostInfo>('/v1/host');

/** The ApiError a request ends with (the test fails if it succeeds). */
async function refusal(d: TestDaemon, method: string, url: string, body?: unknown): Promise<ApiError> {
  try {
    await d.client.request(method, url, body);
  } catch (e) {
    assert.ok(e instanceof ApiError, String(e));
    return e;
  }
  assert.fail(`${method} ${url} succeeded`);
}

/**
 * Codes this file's daemon cannot reach, and the test file that does: the web console's door (its
 * session and CSRF checks), a snapshot that needs a guest with a disk, create-image (run by the CLI).
 */
const ELSEWHERE_CODES: Partial<Record<ErrorCode, [string, RegExp]>> = {
  UNAUTHORIZED: ['test/web.test.ts', /\.status, 401\)/],
  FORBIDDEN: ['test/web.test.ts', /\.status, 403\)/],
  SNAPSHOT_EXISTS: ['test/snapshot.test.ts', /already has a snapshot named 'offj'/],
  IMAGE_ERROR: ['test/cli-operate.test.ts', /'create-image'.*'nosuchsuite'/],
};

describe('one xenod: its socket, its errors, its accelerator', () => {
  const d = new TestDaemon();
  before(() => d.start());
  after(() => d.cleanup());
  const seen = new Map<string, number>();

  it('serves its API on a socket of mode 0600', () => {
    const st = statSync(d.socket);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o600);
  });

  it('says which accelerator it chose and why, and warns at create under TCG', async () => {
    const h = await info(d);
    assert.ok(h.accel === 'kvm' || h.accel === 'tcg', h.accel);
    const text = await d.ok(['info']);
    assert.match(text, new RegExp(`^accel\\s+: ${h.accel}$`, 'm'));
    assert.match(text, /^accel_reason\s+: \S.*$/m);
    if (h.accel === 'tcg') assert.match(h.accel_reason, /falling back to TCG emulation$/);
    else assert.match(h.accel_reason, /^KVM \((vmx|svm)\) works: probe guest booted and exited$/);
    const r = await d.xeno(['create', d.writeCfg('g', guestCfg('g'))]);
    assert.equal(r.code, 0, r.stderr);
    const warning = /^warning: no usable KVM on this host: g runs under TCG emulation \(slow\); see xeno info$/m;
    if (h.accel === 'tcg') assert.match(r.stderr, warning);
    else assert.doesNotMatch(r.stderr, warning);
  });

  it('answers every error code with its catalogued HTTP status, through real requests', async () => {
    const expect = async (code: ErrorCode, re: RegExp, method: string, url: string, body?: unknown) => {
      const e = await refusal(d, method, url, body);
      assert.equal(e.code, code, `${method} ${url}: ${e.message}`);
      assert.equal(e.status, ERROR_CATALOGUE[code].status, `${code} is HTTP ${ERROR_CATALOGUE[code].status}`);
      assert.match(e.message, re);
      seen.set(code, e.status);
    };
    const notKernel = path.join(d.dir, 'not-a-kernel');
    writeFileSync(notKernel, 'not a kernel\n');
    await expect('CONFIG_SYNTAX', /<request>:1:8: expected a value for "name"/, 'POST', '/v1/domains', { cfgText: 'name = \n' });
    await expect('CONFIG_INVALID', /key "vcpus" must be between 1 and 128 \(got 0\)/, 'POST', '/v1/domains', { cfgText: guestCfg('ci', { vcpus: 0 }) });
    await expect('BAD_REQUEST', /a create request needs cfgText or config/, 'POST', '/v1/domains', {});
    await expect('INVALID_NAME', /'Domain-0' is the host's own name/, 'POST', '/v1/domains', { cfgText: guestCfg('Domain-0') });
    await expect('NO_SUCH_DOMAIN', /domain 'nosuch' does not exist/, 'GET', '/v1/domains/nosuch');
    await expect('NO_SUCH_FILE', /kernel file \/nonexistent\/vmlinuz does not exist/, 'POST', '/v1/domains', { cfgText: guestCfg('nf').replace(GUEST.kernel, '/nonexistent/vmlinuz') });
    await expect('DOMAIN_EXISTS', /already exists/, 'POST', '/v1/domains', { cfgText: guestCfg('g') });
    await expect('BAD_STATE', /cannot unpause domain g: it is running/, 'POST', '/v1/domains/g/unpause');
    writeFileSync(path.join(d.dir, 'busy.save.partial'), '');
    await expect('BUSY', /busy\.save\.partial already exists: another save/, 'POST', '/v1/domains/g/save', { file: path.join(d.dir, 'busy.save') });
    await expect('NO_MEMORY', /not enough free host memory to create huge/, 'POST', '/v1/domains', { cfgText: guestCfg('huge', { memory: 64 * 1024 * 1024 }) });
    await expect('QEMU_ERROR', /QEMU failed to start \(exit \d+\)/, 'POST', '/v1/domains', { cfgText: guestCfg('nk').replace(GUEST.kernel, notKernel) });
    await expect('HOST_ERROR', /cannot write \/etc\/hostname\/x\.save: ENOTDIR/, 'POST', '/v1/domains/g/save', { file: '/etc/hostname/x.save' });
    await expect('SAVE_FORMAT', /not-a-kernel is not a xeno save file/, 'POST', '/v1/restore', { file: notKernel });
    await expect('NO_SUCH_SNAPSHOT', /g has no snapshot named 'nosuch'/, 'POST', '/v1/domains/g/snapshots/nosuch/revert');
    await expect('BOOTLOADER_ERROR', /pygrub: no ext2\/3\/4 file system on .* holds a grub\.cfg/, 'POST', '/v1/domains', {
      cfgText: ['name = "bl"', 'bootloader = "pygrub"', 'memory = 128', `disk = [ 'file:${GUEST.disk},xvda,r' ]`, ''].join('\n'),
    });
    // the wait runs out long before a guest can act on the power button (it takes seconds under TCG)
    await expect('TIMEOUT', /domain g did not shut down within 0\.05 s/, 'POST', '/v1/domains/g/shutdown', { wait: true, timeout: 0.05 });
    await d.xeno(['destroy', 'g']); // refused only if it has shut down meanwhile (a fast KVM guest)
    assert.deepEqual((await d.rows()).map((r) => r.name), ['Domain-0'], 'the refused requests left no domain');
  });

  it('maps every code, INTERNAL and unexpected errors included, in its one error mapper', async () => {
    // The real app: routes added only to throw. No request reaches INTERNAL on purpose.
    // The routes only close over the context at registration: a context whose every member is inert.
    const inert: unknown = new Proxy(function inert() {}, { get: (_t, k) => (k === 'then' ? undefined : inert), apply: () => inert });
    const app = await buildApp(inert as DaemonContext);
    for (const code of Object.keys(ERROR_CATALOGUE) as ErrorCode[]) app.get(`/throw/${code}`, async () => Promise.reject(new XenoError(code, `thrown ${code}`)));
    app.get('/throw/plain', async () => Promise.reject(new Error('boom')));
    for (const code of Object.keys(ERROR_CATALOGUE) as ErrorCode[]) {
      const res = await app.inject({ method: 'GET', url: `/throw/${code}` });
      assert.equal(res.statusCode, ERROR_CATALOGUE[code].status, code);
      assert.deepEqual((res.json() as { error: { code: string; message: string } }).error, { code, message: `thrown ${code}` });
      const elsewhere = ELSEWHERE_CODES[code];
      if (elsewhere) assert.match(readFileSync(path.join(REPO, elsewhere[0]), 'utf8'), elsewhere[1], `${code} is reached in ${elsewhere[0]}`);
      else if (code !== 'INTERNAL') assert.equal(seen.get(code), ERROR_CATALOGUE[code].status, `${code} was also reached through a real request`);
    }
    const plain = await app.inject({ method: 'GET', url: '/throw/plain' });
    assert.equal(plain.statusCode, 500);
    assert.deepEqual((plain.json() as { error: unknown }).error, { code: 'INTERNAL', message: 'boom' });
    await app.close();
  });
});

describe('memory accounting at its edge: exactly two guests fit', () => {
  let charge = 0;
  let total = 0;
  let d: TestDaemon;

  before(async () => {
    ({ charge, total } = await measureGuestCharge());
    assert.ok(charge > 128, `a guest costs its maxmem and QEMU's overhead: ${charge} MiB`);
    const dom0 = total - 2 * charge - Math.floor(charge / 2);
    d = new TestDaemon({ configText: `(dom0-min-mem ${dom0})\n(xeno-accel tcg)\n` });
    await d.start();
  });
  after(() => d?.cleanup());

  it('admits two guests, refuses a third, and admits it once one is destroyed', async () => {
    const h = await info(d);
    assert.equal(h.accel, 'tcg');
    assert.equal(h.accel_reason, 'accel tcg set in the daemon config');
    assert.equal(h.free_memory, 2 * charge + Math.floor(charge / 2));
    const r1 = await d.xeno(['create', d.writeCfg('m1', guestCfg('m1'))]);
    assert.equal(r1.code, 0, r1.stderr);
    assert.match(r1.stderr, /warning: no usable KVM on this host: m1 runs under TCG emulation/, 'the TCG warning, on stderr');
    assert.doesNotMatch(r1.stdout, /warning/);
    await d.createGuest('m2');
    assert.equal((await info(d)).free_memory, Math.floor(charge / 2));
    const r3 = await d.xeno(['create', d.writeCfg('m3', guestCfg('m3'))]);
    assert.notEqual(r3.code, 0);
    assert.match(r3.stderr, new RegExp(`not enough free host memory to create m3: needs ${charge} MiB, ${Math.floor(charge / 2)} MiB free`));
    assert.equal(await d.row('m3'), undefined);
    await d.ok(['destroy', 'm1']);
    await d.createGuest('m3');
    assert.equal((await info(d)).free_memory, Math.floor(charge / 2));
  });

  it('refuses a mem-max one MiB over the edge and takes one exactly at it', async () => {
    const half = Math.floor(charge / 2);
    const over = await d.xeno(['mem-max', 'm2', String(128 + half + 1)]);
    assert.notEqual(over.code, 0);
    assert.match(over.stderr, /not enough free host memory to raise the maxmem of m2/);
    assert.equal((await d.row('m2'))!.maxmem, 128);
    const at = await d.xeno(['mem-max', 'm2', String(128 + half)]);
    assert.equal(at.code, 0, at.stderr);
    assert.equal((await info(d)).free_memory, 0);
    await d.ok(['mem-max', 'm2', '128']);
    assert.equal((await info(d)).free_memory, half);
  });

  it('refuses a restore that does not fit, and restores once there is room', async () => {
    const file = path.join(d.dir, 'm3.save');
    await d.ok(['save', 'm3', file]);
    assert.equal((await info(d)).free_memory, charge + Math.floor(charge / 2), 'a saved guest holds nothing');
    await d.createGuest('m4'); // takes the room m3 left
    const r = await d.xeno(['restore', file]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, new RegExp(`cannot restore .*m3\\.save: not enough free host memory to create m3: needs ${charge} MiB, ${Math.floor(charge / 2)} MiB free`));
    assert.equal(await d.row('m3'), undefined);
    await d.ok(['destroy', 'm4']);
    await d.ok(['restore', file]);
    assert.equal((await d.row('m3'))!.state, 'running');
  });

  it('three creates issued at once where two fit: two run, one is refused and leaves nothing', async () => {
    // the QEMUs start side by side (only the checks and the record are under the memory lock):
    // the charge must be taken when the record is made, not once QEMU is up
    for (const n of ['m2', 'm3']) await d.ok(['destroy', n]);
    const names = ['c1', 'c2', 'c3'];
    const rs = await Promise.all(names.map((n) => d.xeno(['create', d.writeCfg(n, guestCfg(n))])));
    const ok = names.filter((_, i) => rs[i]!.code === 0);
    const refused = names.filter((_, i) => rs[i]!.code !== 0);
    assert.equal(ok.length, 2, rs.map((r) => r.stderr).join('\n'));
    assert.match(rs[names.indexOf(refused[0]!)]!.stderr, new RegExp(`not enough free host memory to create ${refused[0]}`));
    assert.equal(await d.row(refused[0]!), undefined);
    for (const n of ok) assert.equal((await d.row(n))!.state, 'running');
    assert.equal((await info(d)).free_memory, Math.floor(charge / 2));
  });
});
