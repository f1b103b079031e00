/**
 * A real Debian guest, end to end: `xeno create-image` builds it (the debootstrap base is cached
 * under /var/cache/xeno/bases across runs; the image itself is built once per run), xenod (in NAT
 * mode, inside the test's own namespaces) boots it through pygrub from qcow2, and the checks use
 * the guest's own services: multi-user.target, nginx from --packages, sshd, the guest agent's IP
 * and OS, a hot-added vcpu onlined (nproc == xeno's count), save/restore with the services still
 * answering, a boot config edited in the guest taking effect at the next boot, a clean shutdown.
 * Only addresses inside the test's namespaces are used.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { DomainDetail } from '../src/model/api.js';
import { TestDaemon, sleep } from './helpers/harness.js';
import { NetWorld } from './net/world.js';

const BOOT_MS = 420_000;
const t_diag = (m: string) => process.stderr.write(`# ${m}\n`);

describe('a Debian guest from create-image, booted through pygrub', { timeout: 1_800_000 }, () => {
  let w: NetWorld;
  let d: TestDaemon;
  const work = mkdtempSync(path.join(os.tmpdir(), 'xeno-img-'));
  const key = path.join(work, 'id_ed25519');
  let cfg = '';
  let ip = '';

  const ssh = async (cmd: string): Promise<string> => {
    const r = await w.run(w.host, [
      'ssh', '-i', key, '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'ConnectTimeout=20',
      '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR', `root@${ip}`, cmd,
    ], { timeoutMs: 90_000 });
    assert.equal(r.code, 0, `ssh ${cmd}: ${r.stderr}`);
    return r.stdout.trim();
  };
  const http = async (): Promise<string> => (await w.run(w.host, ['curl', '-s', '-m', '20', `http://${ip}/`], { timeoutMs: 30_000 })).stdout;
  const detail = async (): Promise<DomainDetail> => (JSON.parse(await d.ok(['list', '-l', 'web'])) as DomainDetail[])[0]!;
  /** Polls the agent (through `xeno list -l`) until the guest reports a NAT address. */
  const agentAddress = async (): Promise<string> => {
    const deadline = Date.now() + BOOT_MS;
    for (;;) {
      const g = (await detail()).guest;
      const a = g?.addresses.find((x) => x.startsWith('10.0.'));
      if (a) return a;
      if (Date.now() > deadline) throw new Error(`no address from the guest agent; console: ${d.consoleLog('web').slice(-800)}`);
      await sleep(2000);
    }
  };

  before(async () => {
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
    w = await NetWorld.create('img');
    d = new TestDaemon({ wrap: ['ip', 'netns', 'exec', w.host], args: ['--accel', 'tcg'], configText: "(network-script 'network-nat netdev=eth0')\n(vif-script vif-nat)\n" });
    await d.start();
  });
  after(async () => {
    await d?.cleanup();
    await w?.destroy();
    rmSync(work, { recursive: true, force: true });
  });

  it('create-image builds a qcow2 image and its xl.cfg (base cached across runs)', async (t) => {
    const t0 = Date.now();
    const r = await d.xeno(['create-image', '--hostname', 'web', '--dist', 'bookworm', '--size', '3G', '--memory', '512', '--vcpus', '1',
      '--dhcp', '--ssh-key', `${key}.pub`, '--packages', 'nginx', '--bootloader', 'pygrub', '--dir', work, '--json'], { timeoutMs: 1_500_000 });
    assert.equal(r.code, 0, r.stderr);
    const res = JSON.parse(r.stdout) as { image: string; config: string; baseCached: boolean; timings: Record<string, number> };
    t.diagnostic(`create-image: ${Date.now() - t0} ms (${res.baseCached ? 'cached base' : 'cold: debootstrap'}) ${JSON.stringify(res.timings)}`);
    assert.match(r.stderr, /\[1\/6\] base/, 'plain progress lines when not a terminal');
    assert.equal(res.image, path.join(work, 'web.qcow2'));
    assert.match(execFileSync('qemu-img', ['info', res.image], { encoding: 'utf8' }), /file format: qcow2/);
    cfg = readFileSync(res.config, 'utf8');
    assert.match(cfg, /^bootloader = "pygrub"$/m);
    assert.match(cfg, new RegExp(`^disk = \\['format=qcow2,vdev=xvda,access=rw,target=${res.image.replace(/[.]/g, '\\.')}'\\]$`, 'm'));
    // A second image with the same name is refused, nothing overwritten.
    const again = await d.xeno(['create-image', '--hostname', 'web', '--dir', work]);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /already exists/);
  });

  it('boots through pygrub from qcow2 and reaches multi-user.target; the agent reports its IP and OS', async () => {
    await d.ok(['create', path.join(work, 'web.cfg'), 'vcpus=1', 'maxvcpus=2']);
    assert.match(d.log, /pygrub: booting the guest's own kernel/);
    await d.waitConsole('web', /web login:/, BOOT_MS);
    ip = await agentAddress();
    const g = (await detail()).guest!;
    assert.match(g.os ?? '', /Debian GNU\/Linux 12/);
    const vifs = JSON.parse(await d.ok(['network-list', '--json', 'web'])) as { vifs: Array<{ ips: string[] }> };
    assert.deepEqual(vifs.vifs[0]!.ips, [ip], 'the agent reports the address xenod leased');
    assert.equal(await ssh('systemctl is-active multi-user.target'), 'active');
    assert.equal(await ssh('hostname'), 'web');
    assert.match(await ssh('cat /proc/cmdline'), /root=LABEL=xeno-root/);
  });

  it('answers HTTP (nginx from --packages) and ssh on its NAT address from the host', async () => {
    assert.match(await http(), /Welcome to nginx/);
    assert.match((await w.tcpFetch(w.host, ip, 22, 10_000)) ?? '', /^SSH-2\.0-OpenSSH/);
  });

  it('a hot-added vcpu comes online in the guest: nproc == the vcpus xeno shows', async () => {
    assert.equal(await ssh('nproc'), '1');
    const r = JSON.parse(await d.ok(['vcpu-set', '--json', 'web', '2'])) as { vcpus: number; guestOnline?: number };
    assert.equal(r.vcpus, 2);
    assert.equal(r.guestOnline, 2, 'onlined through the guest agent');
    assert.equal(await ssh('nproc'), '2');
    assert.equal((await d.row('web'))!.vcpus, 2);
  });

  it('survives save and restore with its services running', async () => {
    const file = path.join(work, 'web.save');
    await d.ok(['save', 'web', file]);
    assert.equal(await d.row('web'), undefined);
    await d.ok(['restore', file]);
    assert.match(await http(), /Welcome to nginx/);
    assert.equal(await ssh('systemctl is-active nginx ssh qemu-guest-agent'), 'active\nactive\nactive');
    assert.equal(await ssh('nproc'), '2');
    rmSync(file, { force: true });
  });

  it("a boot config changed inside the guest is what the next boot runs (extraction at every start)", async () => {
    await ssh("sed -i 's/ console=ttyS0$/ console=ttyS0 xeno.marker=1/' /boot/grub/grub.cfg && sync");
    const from = d.consoleLog('web').length;
    await d.ok(['reboot', 'web']);
    await d.waitConsole('web', /web login:/, BOOT_MS, from);
    ip = await agentAddress();
    assert.match(await ssh('cat /proc/cmdline'), /xeno\.marker=1/);
  });

  it('shuts down cleanly (through the agent when the ACPI button goes unheard: minbase has no dbus, so no logind)', async () => {
    await d.ok(['shutdown', '-w', 'web']);
    assert.equal(await d.row('web'), undefined);
    assert.match(d.consoleLog('web'), /reboot: Power down/);
    const events = await d.ok(['dmesg']);
    t_diag(events.split('\n').filter((l) => / web\(/.test(l) && /shutdown|reboot/.test(l)).join('\n'));
  });
});
