/**
 * Installing xeno: scripts/install.sh into a DESTDIR puts every file where it belongs (and the
 * launchers run from there); an admin's xend-config.sxp is never overwritten; installed under
 * another PREFIX, the systemd units pass `systemd-analyze verify`; scripts/build-deb.sh builds a
 * package whose contents (dpkg-deb -c) and control data are checked. (Installing the .deb for real
 * is not done here: it would change this machine.)
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, describe, it } from 'node:test';
import { REPO, XENOD_NODE_FLAGS } from './helpers/harness.js';

const execFileP = promisify(execFile);

/** Every file an install must leave, relative to the root (with PREFIX=/usr, SYSCONFDIR=/etc). */
const FILES: Array<[string, 'file' | 'exec' | 'link' | 'dir']> = [
  ['usr/bin/xeno', 'exec'],
  ['usr/bin/xm', 'link'],
  ['usr/sbin/xenod', 'exec'],
  ['usr/lib/xeno/package.json', 'file'],
  ['usr/lib/xeno/dist/cli-bundle/xeno.cjs', 'file'],
  ['usr/lib/xeno/dist/cli-bundle/xeno-code.cjs', 'file'],
  ['usr/lib/xeno/dist/cli-bundle/xeno-code.cjs.cache', 'file'],
  ['usr/lib/xeno/dist/cli-bundle/xeno-core.cjs', 'file'],
  ['usr/lib/xeno/dist/cli-bundle/xeno-core.cjs.cache', 'file'],
  ['usr/lib/xeno/dist/src/daemon/main.js', 'file'],
  ['usr/lib/xeno/node_modules/better-sqlite3/package.json', 'file'],
  ['usr/lib/xeno/node_modules/fastify/package.json', 'file'],
  ['etc/xeno/xend-config.sxp', 'file'],
  ['etc/xeno/auto', 'dir'],
  ['usr/lib/systemd/system/xenod.service', 'file'],
  ['usr/lib/systemd/system/xendomains.service', 'file'],
  ['usr/share/bash-completion/completions/xeno', 'file'],
  ['usr/share/bash-completion/completions/xm', 'link'],
  ['usr/share/man/man1/xeno.1.gz', 'file'],
  ['usr/share/man/man1/xm.1.gz', 'link'],
  ['usr/share/man/man8/xenod.8.gz', 'file'],
  ['usr/share/man/man5/xeno.cfg.5.gz', 'file'],
  ['usr/share/doc/xeno/README.md', 'file'],
  ['usr/share/doc/xeno/comparison.md', 'file'],
];

function run(cmd: string, args: string[], env: Record<string, string> = {}): Promise<{ stdout: string; stderr: string }> {
  return execFileP(cmd, args, { cwd: REPO, env: { ...process.env, ...env }, maxBuffer: 64 * 1024 * 1024 });
}

describe('installing xeno', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'xeno-install-t-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('install.sh into a DESTDIR: every file, launchers that run from there, no test code', async () => {
    const root = path.join(dir, 'root');
    await run('bash', ['scripts/install.sh'], { DESTDIR: root });
    for (const [f, kind] of FILES) {
      const p = path.join(root, f);
      assert.ok(existsSync(p) || kind === 'link', `${f} installed`);
      const st = lstatSync(p);
      if (kind === 'exec') assert.ok(st.isFile() && (st.mode & 0o111) !== 0, `${f} is executable`);
      if (kind === 'link') assert.ok(st.isSymbolicLink(), `${f} is a link`);
      if (kind === 'dir') assert.ok(st.isDirectory(), `${f} is a directory`);
    }
    assert.equal(readlinkSync(path.join(root, 'usr/bin/xm')), 'xeno');
    assert.deepEqual(readFileSync(path.join(root, 'etc/xeno/xend-config.sxp'), 'utf8'), readFileSync(path.join(REPO, 'examples/xend-config.sxp'), 'utf8'));
    const all = (await run('find', [path.join(root, 'usr/lib/xeno/dist')])).stdout;
    assert.doesNotMatch(all, /\.test\.js$|\/dist\/test\/|\/bench\//m, 'no tests or benches installed');
    assert.ok(!existsSync(path.join(root, 'usr/lib/xeno/node_modules/typescript')), 'no dev dependencies');
    // The launchers find node and xeno's code wherever the tree landed; xm is xeno.
    assert.match((await run(path.join(root, 'usr/bin/xm'), ['--version'], { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' })).stdout, /^\d+\.\d+\.\d+/);
    assert.match((await run(path.join(root, 'usr/sbin/xenod'), ['--version'], { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' })).stdout, /^xenod \d/);
    // xenod runs with packaging/xenod.node-flags, installed or from the tree (bin/xenod.js's first line); the CLI with none.
    assert.ok(XENOD_NODE_FLAGS.includes('--max-semi-space-size=4'), `xenod's flags: ${XENOD_NODE_FLAGS.join(' ')}`);
    assert.match(readFileSync(path.join(root, 'usr/sbin/xenod'), 'utf8'), new RegExp(`exec "\\$n" ${XENOD_NODE_FLAGS.join(' ')} "\\$lib/dist/src/daemon/main\\.js"`));
    assert.match(readFileSync(path.join(root, 'usr/bin/xeno'), 'utf8'), /exec "\$n" +"\$lib\/dist\/cli-bundle\/xeno\.cjs"/);
    assert.equal(readFileSync(path.join(REPO, 'bin/xenod.js'), 'utf8').split('\n')[0], `#!/usr/bin/env -S node ${XENOD_NODE_FLAGS.join(' ')}`);
    const unit = readFileSync(path.join(root, 'usr/lib/systemd/system/xenod.service'), 'utf8');
    assert.match(unit, /^ExecStart=\/usr\/sbin\/xenod --config \/etc\/xeno\/xend-config\.sxp$/m);
    assert.match(unit, /^KillMode=process$/m);
    assert.match(readFileSync(path.join(root, 'usr/lib/systemd/system/xendomains.service'), 'utf8'), /^ExecStop=\/usr\/bin\/xeno host-stop$/m);
    // The man pages are readable by man.
    assert.match((await run('man', ['-l', path.join(root, 'usr/share/man/man8/xenod.8.gz')], { MANWIDTH: '100', MAN_KEEP_FORMATTING: '' })).stdout, /xeno-on-host-stop/);

    // An upgrade never overwrites the admin's config.
    const conf = path.join(root, 'etc/xeno/xend-config.sxp');
    writeFileSync(conf, '(xeno-on-host-stop shutdown)\n');
    const again = await run('bash', ['scripts/install.sh'], { DESTDIR: root });
    assert.equal(readFileSync(conf, 'utf8'), '(xeno-on-host-stop shutdown)\n');
    assert.match(again.stdout, /keeping your \/etc\/xeno\/xend-config\.sxp/);
  });

  it('installed under another PREFIX, both units pass systemd-analyze verify', async () => {
    const prefix = path.join(dir, 'p');
    await run('bash', ['scripts/install.sh'], { PREFIX: `${prefix}/usr`, SYSCONFDIR: `${prefix}/etc` });
    const units = ['xenod.service', 'xendomains.service'].map((u) => path.join(prefix, 'usr/lib/systemd/system', u));
    assert.match(readFileSync(units[0]!, 'utf8'), new RegExp(`^ExecStart=${prefix}/usr/sbin/xenod --config ${prefix}/etc/xeno/xend-config.sxp$`, 'm'));
    const r = await run('systemd-analyze', ['verify', ...units], { MANPATH: path.join(prefix, 'usr/share/man') }).catch((e: { stderr: string; code: number }) => e);
    assert.equal(r.stderr, '', `systemd-analyze verify: ${r.stderr}`);
  });

  it('build-deb.sh builds a package with the right contents, dependencies and conffile', async () => {
    const out = path.join(dir, 'deb');
    const deb = (await run('bash', ['scripts/build-deb.sh', out])).stdout.trim();
    assert.match(path.basename(deb), /^xeno_\d+\.\d+\.\d+_[a-z0-9]+\.deb$/);
    assert.ok(statSync(deb).size > 1e6);
    const listing = (await run('dpkg-deb', ['-c', deb])).stdout;
    const paths = listing.split('\n').map((l) => l.split(/\s+/).slice(5).join(' ').replace(/ -> .*$/, '').replace(/^\.\//, '').replace(/\/$/, ''));
    for (const [f] of FILES) {
      const inDeb = f.replace(/^usr\/lib\/systemd/, 'lib/systemd');
      assert.ok(paths.includes(inDeb), `${inDeb} in the package`);
    }
    assert.match(listing, /^-rwxr-xr-x root\/root .* \.\/usr\/sbin\/xenod$/m);
    const control = (await run('dpkg-deb', ['-f', deb])).stdout;
    assert.match(control, /^Depends: qemu-system-x86, qemu-utils, iproute2, nftables, dnsmasq-base, nodejs \(>= 20\)$/m);
    const info = path.join(dir, 'ctrl');
    await run('dpkg-deb', ['-e', deb, info]);
    assert.equal(readFileSync(path.join(info, 'conffiles'), 'utf8'), '/etc/xeno/xend-config.sxp\n');
    assert.deepEqual(readdirSync(info).sort(), ['conffiles', 'control', 'postinst', 'postrm', 'prerm']);
    assert.match(readFileSync(path.join(info, 'postrm'), 'utf8'), /disks and save files are kept/);
  });
});
