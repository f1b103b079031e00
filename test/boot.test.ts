/**
 * Real guests booted the Xen ways on QEMU: an hvm guest from its own disk's boot sector (SeaBIOS)
 * or from a cdrom ISO first (boot = "d"), with a VNC display a real RFB handshake reaches (with
 * VNC authentication when it has a password); a PV guest whose kernel is told console=hvc0 has
 * its console in `xeno console`; Xen disk names (xvdb given before xvda, root=/dev/xvda) seen
 * from inside the guest; save and migrate refused after a vcpu unplug while the guest runs on; a
 * QEMU killed from outside leaves its end in `xeno dmesg`.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TestDaemon, guestCfg, sleep } from './helpers/harness.js';

/**
 * A 16-bit boot sector printing `text` on COM1 then halting: xor ax,ax; mov ds,ax;
 * mov si,0x7c16; mov dx,0x3f8; cld; l: lodsb; test al,al; jz h; out dx,al; jmp l; h: hlt; jmp h.
 */
export function bootSector(text: string, size = 512): Buffer {
  const img = Buffer.alloc(size);
  const code = [0x31, 0xc0, 0x8e, 0xd8, 0xbe, 0x16, 0x7c, 0xba, 0xf8, 0x03, 0xfc, 0xac, 0x84, 0xc0, 0x74, 0x03, 0xee, 0xeb, 0xf8, 0xf4, 0xeb, 0xfd];
  Buffer.from(code).copy(img);
  Buffer.from(`${text}\r\n\0`, 'latin1').copy(img, code.length);
  img[510] = 0x55;
  img[511] = 0xaa;
  return img;
}

/** Reads from a socket until `n` bytes came. */
function readN(s: net.Socket, n: number, have: Buffer[] = []): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.concat(have);
    if (buf.length >= n) return resolve(buf);
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= n) {
        s.off('data', onData);
        s.pause();
        resolve(buf);
      }
    };
    s.on('data', onData);
    s.once('error', reject);
    s.resume();
  });
}

/** The RFB 3.8 handshake up to the security types the server offers. */
async function vncSecurityTypes(address: string): Promise<{ version: string; types: number[] }> {
  const m = /^(.*):(\d+)$/.exec(address)!;
  const s = net.createConnection({ host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) });
  try {
    await new Promise<void>((res, rej) => s.once('connect', res).once('error', rej));
    const hello = await readN(s, 12);
    s.write('RFB 003.008\n');
    const rest = hello.subarray(12);
    const count = await readN(s, 1, [rest]);
    const types = await readN(s, 1 + count[0]!, [count]);
    return { version: hello.subarray(0, 12).toString('latin1'), types: [...types.subarray(1, 1 + count[0]!)] };
  } finally {
    s.destroy();
  }
}

describe('booting the Xen ways, real guests', () => {
  const keyDir = path.join('/tmp', `xeno-boot-${process.pid}`);
  let d: TestDaemon;
  let disk: string;
  let iso: string;

  before(async () => {
    mkdirSync(keyDir, { recursive: true, mode: 0o700 });
    const key = path.join(keyDir, 'reloc.key');
    writeFileSync(key, randomBytes(32).toString('hex') + '\n', { mode: 0o600 });
    d = new TestDaemon({ configText: `(xeno-relocation-key-file '${key}')\n` });
    await d.start();
    // a raw disk whose MBR prints a marker, and an El Torito ISO whose boot image prints another
    disk = path.join(d.dir, 'hvm.img');
    writeFileSync(disk, Buffer.concat([bootSector('XENO-DISK-BOOTED'), Buffer.alloc(1024 * 1024 - 512)]));
    const isoDir = path.join(d.dir, 'iso');
    mkdirSync(isoDir);
    writeFileSync(path.join(isoDir, 'boot.img'), bootSector('XENO-CDROM-BOOTED', 2048));
    iso = path.join(d.dir, 'boot.iso');
    execFileSync('xorriso', ['-as', 'mkisofs', '-quiet', '-b', 'boot.img', '-no-emul-boot', '-boot-load-size', '4', '-o', iso, isoDir], { stdio: 'pipe' });
  });

  after(async () => {
    await d?.cleanup();
    execFileSync('rm', ['-rf', keyDir]);
  });

  /** Runs `fn`, then destroys the domains it made, whether it passed or not (the next test reuses the disk). */
  async function withDomains(names: string[], fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } finally {
      for (const n of names) if (await d.row(n)) await d.xeno(['destroy', n]);
    }
  }

  const hvmCfg = (name: string, lines: string[]) => d.writeCfg(name, [`name = "${name}"`, 'type = "hvm"', 'memory = 64', ...lines].join('\n') + '\n');

  it('an hvm guest boots its own disk (SeaBIOS), with a VNC display an RFB client reaches', async () => {
    await withDomains(['hvm1'], async () => {
      const out = await d.xeno(['create', hvmCfg('hvm1', [`disk = [ "${disk},raw,xvda,rw" ]`, 'vnc = 1', 'serial = "pty"'])]);
      assert.equal(out.code, 0, out.stderr);
      await d.waitConsole('hvm1', /XENO-DISK-BOOTED/, 120_000);
      const [info] = JSON.parse(await d.ok(['list', '-l', 'hvm1'])) as Array<{ vnc?: string }>;
      assert.match(info!.vnc ?? '', /^127\.0\.0\.1:59\d\d$/, 'list -l shows where the display listens');
      const rfb = await vncSecurityTypes(info!.vnc!);
      assert.equal(rfb.version, 'RFB 003.008\n');
      assert.deepEqual(rfb.types, [1], 'no password: security type None');
      assert.doesNotMatch(out.stderr, /serial/, 'serial = "pty" is what xeno does anyway');
      await d.ok(['destroy', 'hvm1']);
    });
  });

  it('boot = "d" boots the cdrom ISO first; a VNC password means VNC authentication and stays out of argv', async () => {
    await withDomains(['hvm2', 'hvm3'], async () => {
      const cfg = hvmCfg('hvm2', [`disk = [ "${disk},raw,xvda,rw", "${iso},raw,hdc,ro,devtype=cdrom" ]`, 'boot = "dc"', 'vfb = [ "vnc=1,vncpasswd=pw12345" ]']);
      await d.ok(['create', cfg]);
      await d.waitConsole('hvm2', /XENO-CDROM-BOOTED/, 120_000);
      assert.doesNotMatch(d.consoleLog('hvm2'), /XENO-DISK-BOOTED/);
      const [info] = JSON.parse(await d.ok(['list', '-l', 'hvm2'])) as Array<{ vnc?: string; pid: number }>;
      assert.ok((await vncSecurityTypes(info!.vnc!)).types.includes(2), 'VNC authentication offered');
      const argv = readFileSync(`/proc/${info!.pid}/cmdline`, 'utf8');
      assert.match(argv, /password=on/);
      assert.doesNotMatch(argv, /pw12345/);
      await d.ok(['destroy', 'hvm2']);
      // beyond loopback without a password: refused before anything is made
      const bad = await d.xeno(['create', hvmCfg('hvm3', [`disk = [ "${disk},raw,xvda,rw" ]`, 'vnc = 1', 'vnclisten = "0.0.0.0"'])]);
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /needs a password/);
      assert.equal(await d.row('hvm3'), undefined);
    });
  });

  it('a PV guest booted with console=hvc0 has its console (prompt and input) in xeno console', async () => {
    await withDomains(['hvc'], async () => {
      await d.ok(['create', d.writeCfg('hvc', guestCfg('hvc', { extra: 'console=hvc0' }))]);
      await d.waitConsole('hvc', /xeno# /, 120_000);
      const tty = await d.guestRun('hvc', 'readlink /proc/self/fd/0');
      assert.match(tty, /\/dev\/hvc0/, 'the shell runs on the virtio console');
      await d.ok(['destroy', 'hvc']);
    });
  });

  it('Xen disk names: xvdb given before xvda, the guest sees vda = xvda, and root=/dev/xvda becomes /dev/vda with a warning', async () => {
    await withDomains(['names'], async () => {
      const a = path.join(d.dir, 'a.img');
      const b = path.join(d.dir, 'b.img');
      writeFileSync(a, Buffer.concat([Buffer.from('MARK-OF-XVDA\n'), Buffer.alloc(65536)]));
      writeFileSync(b, Buffer.concat([Buffer.from('MARK-OF-XVDB\n'), Buffer.alloc(65536)]));
      const cfg = d.writeCfg('names', guestCfg('names', { root: '/dev/xvda ro', disk: `[ "${b},raw,xvdb,rw", "${a},raw,xvda,rw" ]` }));
      const out = await d.xeno(['create', cfg]);
      assert.equal(out.code, 0, out.stderr);
      assert.match(out.stderr, /kernel command line: \/dev\/xvda -> \/dev\/vda/);
      await d.waitConsole('names', /xeno# /, 120_000);
      assert.match(await d.guestRun('names', 'head -c 12 /dev/vda; echo; head -c 12 /dev/vdb; echo'), /MARK-OF-XVDA\nMARK-OF-XVDB/);
      assert.match(await d.guestRun('names', 'cat /proc/cmdline'), /root=\/dev\/vda ro/);
      await d.ok(['destroy', 'names']);
    });
  });

  it('save and migrate are refused after a vcpu unplug (QEMU 7.2 under TCG would hang), and the guest runs on', async () => {
    await withDomains(['unp'], async () => {
      // (booted with one vcpu, one plugged then unplugged: two vcpus booting under a loaded TCG stall)
      await d.ok(['create', d.writeCfg('unp', guestCfg('unp', { vcpus: 1, maxvcpus: 2 }))]);
      await d.waitConsole('unp', /heartbeat 1\b/, 120_000);
      await d.ok(['vcpu-set', 'unp', '2']);
      await d.ok(['vcpu-set', 'unp', '1']);
      const [info] = JSON.parse(await d.ok(['list', '-l', 'unp'])) as Array<{ accel: string; unpluggedSinceBoot?: boolean }>;
      if (info!.accel !== 'tcg') return; // (KVM guests hang on this host; xeno picks TCG here)
      assert.equal(info!.unpluggedSinceBoot, true);
      const save = await d.xeno(['save', 'unp', path.join(d.dir, 'unp.save')]);
      assert.notEqual(save.code, 0);
      assert.match(save.stderr, /save unp: refused: a vcpu was unplugged .* since its boot/);
      const mig = await d.xeno(['migrate', 'unp', '127.0.0.1']);
      assert.notEqual(mig.code, 0);
      assert.match(mig.stderr, /migrate unp: refused: a vcpu was unplugged/);
      assert.equal((await d.row('unp'))!.state, 'running');
      const hb = d.lastHeartbeat('unp');
      await d.waitConsole('unp', new RegExp(`heartbeat ${hb + 2}\\b`), 60_000);
      await d.ok(['destroy', 'unp']);
    });
  });

  it('a QEMU killed from outside leaves how it ended and the end of its log in xeno dmesg', async () => {
    await d.createGuest('k1');
    await d.createGuest('k2');
    const pid = async (n: string) => (JSON.parse(await d.ok(['list', '-l', n])) as Array<{ pid: number }>)[0]!.pid;
    process.kill(await pid('k1'), 'SIGTERM');
    process.kill(await pid('k2'), 'SIGKILL');
    for (let i = 0; i < 600 && ((await d.row('k1')) || (await d.row('k2'))); i++) await sleep(100);
    const dmesg = await d.ok(['dmesg']);
    assert.match(dmesg, /k1.*exited unexpectedly \(exit code 0\); domain k1 removed; the end of its log: .*terminating on signal 15/);
    assert.match(dmesg, /k2.*exited unexpectedly \(killed by SIGKILL\); domain k2 removed/);
  });
});
