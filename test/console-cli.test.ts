/**
 * The README's CLI claims that nothing else runs, on one xenod (isolated, started with
 * --save-on-stop) and the example guests: every file in examples/ parses, and the two guest configs
 * boot; `create -c` attaches to the new guest's console and Ctrl-] detaches; `console --history`
 * prints the kept log first; `xenod --save-on-stop` saves the guests on SIGTERM and brings them
 * back; `shutdown -a -w` shuts every guest down.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseDaemonConfig, parseNetworkScript } from '../src/config/index.js';
import { defaultDaemonConfig } from '../src/model/daemon-config.js';
import { GUEST, REPO, TestDaemon, guestCfg, sleep } from './helpers/harness.js';

const EXAMPLES = path.join(REPO, 'examples');

/** `xeno ARGS` as a live process: its output so far, typing into it, and its exit. */
function interactive(d: TestDaemon, args: string[]) {
  const child = spawn(process.execPath, [path.join(REPO, 'bin/xeno.cjs'), ...args], { cwd: REPO, env: { ...process.env, XENO_SOCKET: d.socket }, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (b) => (stdout += String(b)));
  child.stderr.on('data', (b) => (stderr += String(b)));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('close', (code, signal) => r({ code, signal })));
  return {
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
    type: (s: string) => child.stdin.write(s),
    async waitOut(re: RegExp, timeoutMs = 90_000): Promise<void> {
      const deadline = Date.now() + timeoutMs;
      while (!re.test(stdout)) {
        if (Date.now() > deadline) throw new Error(`xeno ${args.join(' ')}: no ${re} in ${stdout.slice(-400)} (stderr ${stderr})`);
        await sleep(100);
      }
    },
    exited,
    kill: () => child.kill('SIGKILL'),
  };
}

describe('examples/ and the console commands on one xenod', () => {
  const d = new TestDaemon({ isolated: true, args: ['--save-on-stop'] });
  before(() => d.start());
  after(() => d.cleanup());

  /** The example's disk is the shared image opened read-write: each guest boots a copy of its own. */
  const diskOverride = (name: string) => {
    const copy = path.join(d.dir, `${name}.ext4`);
    copyFileSync(GUEST.disk, copy);
    return `disk=['format=raw, vdev=xvda, access=rw, target=${copy}']`;
  };

  it('every file in examples/ parses: the daemon config gives the defaults it documents', async () => {
    const files = readdirSync(EXAMPLES).sort();
    assert.deepEqual(files, ['demo-xm.cfg', 'demo.cfg', 'xend-config.sxp'], 'a test for every example');
    const warnings: string[] = [];
    const cfg = parseDaemonConfig(readFileSync(path.join(EXAMPLES, 'xend-config.sxp'), 'utf8'), 'xend-config.sxp', (w) => warnings.push(w));
    assert.deepEqual(warnings, []);
    for (const [k, v] of Object.entries(defaultDaemonConfig())) {
      const got = (cfg as unknown as Record<string, unknown>)[k];
      if (k === 'networkScript') {
        // spelled out with its default bridge name
        const a = parseNetworkScript(String(got));
        const b = parseNetworkScript(String(v));
        assert.deepEqual([a.mode, a.args.bridge ?? 'xenbr0'], [b.mode, b.args.bridge ?? 'xenbr0'], `xend-config.sxp: ${k} is its default`);
      } else {
        assert.deepEqual(got, v, `xend-config.sxp: ${k} is its default`);
      }
    }
    for (const [file, name] of [['demo.cfg', 'demo'], ['demo-xm.cfg', 'demo-xm']] as const) {
      const r = await d.xeno(['create', '-n', path.join('examples', file)]);
      assert.equal(r.code, 0, `${file}: ${r.stderr}`);
      const c = JSON.parse(r.stdout) as { name: string; memory: number; vifs: unknown[]; disks: Array<{ target: string }> };
      assert.equal(c.name, name);
      assert.equal(c.memory, 128);
      assert.equal(c.vifs.length, 1);
      assert.equal(c.disks[0]!.target, GUEST.disk, 'paths relative to the repository root');
    }
  });

  it('boots the example guests (xl and xm syntax), each with its disk mounted', async () => {
    await d.ok(['create', 'examples/demo.cfg', diskOverride('demo')]);
    await d.ok(['create', 'examples/demo-xm.cfg', diskOverride('demo-xm')]);
    await d.waitConsole('demo', /xeno-guest: up hostname=demo\b/, 120_000);
    await d.waitConsole('demo-xm', /xeno-guest: up hostname=demo-xm\b/, 120_000);
    for (const name of ['demo', 'demo-xm']) {
      await d.waitConsole(name, /xeno-guest: mounted \/dev\/vda/, 60_000);
      assert.match(await d.guestRun(name, 'cat /mnt/hello.txt'), /hello from xeno disk/);
    }
  });

  it('create -c attaches to the new console, and Ctrl-] detaches leaving the guest running', async () => {
    const cc = interactive(d, ['create', '-c', d.writeCfg('cc', guestCfg('cc'))]);
    try {
      await cc.waitOut(/xeno# /, 120_000);
      cc.type('echo $((6*7))\n');
      await cc.waitOut(/^42\r?$/m, 60_000); // the guest computed it: the echo of the line holds 6*7
      cc.type('\x1d');
      const end = await Promise.race([cc.exited, sleep(30_000).then(() => 'still attached' as const)]);
      assert.deepEqual(end, { code: 0, signal: null }, 'Ctrl-] ends the console with status 0');
    } finally {
      cc.kill();
    }
    assert.equal((await d.row('cc'))!.state, 'running', 'detaching leaves the guest running');
  });

  it('console --history prints the kept log first; without it only what comes next', async () => {
    const plain = await d.xeno(['console', 'cc'], { timeoutMs: 4000 });
    assert.doesNotMatch(plain.stdout, /xeno-guest: up/, 'the boot is past: not shown');
    const hist = await d.xeno(['console', '--history', 'cc'], { timeoutMs: 4000 });
    assert.match(hist.stdout, /xeno-guest: up[\s\S]*echo \$\(\(6\*7\)\)\r?\n42\r?\n/, 'the boot and the earlier session, in order');
  });

  it('xenod --save-on-stop saves every guest on SIGTERM and restores them at its next start', async () => {
    const before0 = await d.rows();
    const hb = d.lastHeartbeat('cc');
    const from = d.consoleLog('cc').length;
    await d.stop('SIGTERM');
    assert.deepEqual(readdirSync(path.join(d.stateDir, 'managed-save')).sort(), ['cc.save', 'demo-xm.save', 'demo.save']);
    await d.start();
    const after0 = await d.rows();
    const byName = (rows: typeof before0) => rows.map((r) => [r.name, r.state]).sort();
    assert.deepEqual(byName(after0), byName(before0), 'the same guests, in the same states');
    assert.deepEqual(readdirSync(path.join(d.stateDir, 'managed-save')), []);
    await d.waitConsole('cc', new RegExp(`heartbeat ${hb + 1}\\r?\\n`), 60_000, from);
  });

  it('shutdown -a -w shuts every guest down through its own poweroff', async () => {
    const marks = Object.fromEntries(['demo', 'demo-xm', 'cc'].map((n) => [n, d.consoleLog(n).length]));
    await d.ok(['shutdown', '-a', '-w']);
    assert.deepEqual((await d.rows()).map((r) => r.name), ['Domain-0']);
    for (const [name, from] of Object.entries(marks)) assert.match(d.consoleLog(name).slice(from), /xeno-guest: poweroff/, `${name} powered itself off`);
  });
});
