/**
 * The CLI as an operator meets it, on a real xenod (in a network namespace of its own) and real
 * guests: every command that prints data does so as parseable JSON with --json; bash completion
 * answers from the running daemon; exit codes 0/1/2/3; `xeno help CMD` teaches with examples;
 * `xeno log -f` follows the daemon's log.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildProgram } from '../src/cli/program.js';
import { EXAMPLES } from '../src/cli/examples.js';
import { REPO, TestDaemon, guestCfg, sleep } from './helpers/harness.js';

/** Commands with --json; `migrate` needs a second host: test/migration.test.ts parses its --json. */
/** Commands whose --json needs what this file's daemon has not (another host, metrics, the web door). */
const JSON_ELSEWHERE: Record<string, string> = {
  migrate: 'test/migration.test.ts', top: 'test/metrics.test.ts', 'web-token': 'test/web.test.ts',
  'vcpu-set': 'test/images.test.ts', 'create-image': 'test/images.test.ts',
  'block-list': 'test/storage.test.ts', 'image-info': 'test/storage.test.ts',
  'snapshot-create': 'test/snapshot.test.ts', 'snapshot-list': 'test/snapshot.test.ts', 'snapshot-revert': 'test/snapshot.test.ts', 'snapshot-delete': 'test/snapshot.test.ts',
  'pool-create': 'test/helpers/pool-lab.ts', 'pool-join': 'test/helpers/pool-lab.ts', 'host-list': 'test/pool.test.ts', 'host-evacuate': 'test/pool-ha.test.ts',
};

describe('the CLI for operators', () => {
  const d = new TestDaemon({ isolated: true });
  let id = 0;

  before(async () => {
    await d.start();
    id = await d.createGuest('j1', { vif: "[ 'ip=10.99.0.5' ]" });
    await d.waitConsole('j1', /heartbeat 1\r?\n/);
    await d.ok(['new', d.writeCfg('joff', guestCfg('joff'))]);
  });
  after(async () => {
    await d.cleanup();
  });

  it('every command that prints data prints parseable JSON with --json', async () => {
    const saveFile = path.join(d.dir, 'j2.save');
    const runs: Array<[string, string[]]> = [
      ['create', ['create', d.writeCfg('j2', guestCfg('j2')), '--json']],
      ['list', ['list', '--json']],
      ['list', ['list', '--all', '--json']],
      ['uptime', ['uptime', '--json']],
      ['domid', ['domid', 'j1', '--json']],
      ['domname', ['domname', String(id), '--json']],
      ['config', ['config', 'j1', '--json']],
      ['info', ['info', '--json']],
      ['log', ['log', '-n', '5', '--json']],
      ['dmesg', ['dmesg', '--json']],
      ['network-list', ['network-list', 'j1', '--json']],
      ['network-rules', ['network-rules', 'j1', '--json']],
      ['network-attach', ['network-attach', 'j1', '--json']],
      ['vcpu-list', ['vcpu-list', '--json']],
      ['sched-credit', ['sched-credit', '--json']],
      ['new', ['new', d.writeCfg('jnew', guestCfg('jnew')), '--json']],
      ['start', ['start', 'jnew', '--json']],
      ['save', ['save', 'j2', saveFile, '--json']],
      ['restore', ['restore', saveFile, '--json']],
      ['image-create', ['image-create', path.join(d.dir, 'j.qcow2'), '64M', '--json']],
      ['host-stop', ['host-stop', '-m', 'leave', '--json']],
    ];
    const covered = new Set<string>();
    for (const [cmd, args] of runs) {
      const r = await d.xeno(args);
      assert.equal(r.code, 0, `xeno ${args.join(' ')}: ${r.stderr}`);
      assert.doesNotThrow(() => JSON.parse(r.stdout), `xeno ${args.join(' ')} printed: ${r.stdout.slice(0, 300)}`);
      covered.add(cmd);
    }
    // A build that cannot be made says why (IMAGE_ERROR) and leaves no image.
    const imgDir = path.join(d.dir, 'img');
    const bad = await d.xeno(['create-image', '--hostname', 'x1', '--dist', 'nosuchsuite', '--dir', imgDir]);
    assert.equal(bad.code, 1, bad.stderr);
    assert.match(bad.stderr, /debootstrap/);
    assert.ok(!existsSync(path.join(imgDir, 'x1.qcow2')) && !existsSync(path.join(imgDir, 'x1.cfg')), 'no image or config was left');
    const withJson = buildProgram().commands.filter((c) => c.options.some((o) => o.long === '--json')).map((c) => c.name());
    for (const [cmd, file] of Object.entries(JSON_ELSEWHERE)) {
      assert.ok(withJson.includes(cmd));
      assert.match(readFileSync(path.join(REPO, file), 'utf8'), new RegExp(`'${cmd}'[^\\n]*'--json'`), `${file} parses ${cmd} --json`);
      covered.add(cmd);
    }
    assert.deepEqual([...withJson].sort(), [...covered].sort(), 'every command with --json is run here');
    for (const n of ['j2', 'jnew']) await d.ok(['destroy', n]);
    await d.ok(['delete', 'jnew']);
  });

  it('bash completion: commands, options, domain names from the daemon, defined guests, cfg files', async () => {
    const bin = path.join(d.dir, 'bin');
    mkdirSync(bin, { recursive: true });
    symlinkSync(path.join(REPO, 'bin/xeno.cjs'), path.join(bin, 'xeno'));
    symlinkSync('xeno', path.join(bin, 'xm'));
    const cwd = path.join(d.dir, 'cfgs');
    mkdirSync(cwd);
    writeFileSync(path.join(cwd, 'web.cfg'), guestCfg('web'));
    writeFileSync(path.join(cwd, 'notes.txt'), '');
    const complete = async (line: string): Promise<string[]> => {
      const words = line.split(' ');
      const script = `source ${path.join(REPO, 'packaging/bash-completion/xeno')}
COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _xeno; printf '%s\\n' "\${COMPREPLY[@]}"`;
      return new Promise((resolve) => {
        const c = spawn('bash', ['-c', script], { cwd, env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, XENO_SOCKET: d.socket } });
        let out = '';
        c.stdout.on('data', (x) => (out += String(x)));
        c.on('close', () => resolve(out.split('\n').filter(Boolean).sort()));
      });
    };
    assert.deepEqual(await complete('xeno li'), ['li', 'list']);
    assert.deepEqual(await complete('xeno host'), ['host-disable', 'host-enable', 'host-evacuate', 'host-list', 'host-stop']);
    assert.deepEqual(await complete('xeno console '), ['j1']);
    assert.deepEqual(await complete('xeno shutdown -w j'), ['j1']);
    assert.deepEqual(await complete('xeno start '), ['joff']);
    assert.deepEqual(await complete('xeno create '), ['web.cfg']);
    assert.ok((await complete('xeno list --a')).includes('--all'));
    assert.deepEqual(await complete('xm host-stop -m s'), ['save', 'shutdown']);
  });

  it('exit codes: 0 ok, 1 error, 2 usage, 3 no daemon', async () => {
    assert.equal((await d.xeno(['list'])).code, 0);
    const err = await d.xeno(['destroy', 'nosuch']);
    assert.equal(err.code, 1);
    assert.match(err.stderr, /domain 'nosuch' does not exist/);
    assert.equal((await d.xeno(['list', '--bogus'])).code, 2);
    assert.equal((await d.xeno(['frobnicate'])).code, 2);
    assert.equal((await d.xeno(['create'])).code, 2, 'a missing argument is a usage error');
    const none = await d.xeno(['--socket', path.join(d.dir, 'nobody.sock'), 'list']);
    assert.equal(none.code, 3);
    assert.match(none.stderr, /cannot reach xenod/);
    assert.match((await d.xeno(['--help'])).stdout, /Exit codes:\n {2}0 {2}success\n {2}1 .*\n {2}2 {2}usage error.*\n {2}3 {2}xenod is not running/);
  });

  it('xeno help CMD shows an example for every command', async () => {
    for (const c of buildProgram().commands) {
      if (c.name().startsWith('__')) continue;
      const r = await d.xeno(['help', c.name()]);
      assert.equal(r.code, 0, c.name());
      assert.match(r.stdout, new RegExp(`Examples:\\n {2}xeno ${c.name()}`), `xeno help ${c.name()}`);
      assert.ok(EXAMPLES[c.name()]!.length >= 1);
    }
  });

  it('xeno log -f follows the daemon log', async () => {
    const child = spawn(process.execPath, [path.join(REPO, 'bin/xeno.cjs'), 'log', '-f', '-n', '1'], { env: { ...process.env, XENO_SOCKET: d.socket } });
    let out = '';
    child.stdout.on('data', (x) => (out += String(x)));
    try {
      for (let i = 0; i < 100 && !out; i++) await sleep(100);
      assert.ok(out.length > 0, 'the last line first');
      await d.ok(['pause', 'j1']);
      await d.ok(['unpause', 'j1']);
      for (let i = 0; i < 100 && !/j1 unpaused/.test(out); i++) await sleep(100);
      assert.match(out, /j1 paused[\s\S]*j1 unpaused/);
    } finally {
      child.kill('SIGINT');
    }
    assert.equal(await new Promise((r) => child.on('close', r)), 0);
  });
});
