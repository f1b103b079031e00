/**
 * The CLI's two bundles (scripts/bundle-cli.mjs): the loader runs the core one for the core
 * families' commands and the whole one for everything else, and both behave alike. Runs the built
 * bin/xeno.cjs, with a preload that says which bundle file the loader read.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { CORE_COMMAND_FAMILIES, registerCoreCommands } from './commands/core.js';
import { COMMAND_FAMILIES } from './commands/index.js';
import { CORE_FAMILIES, CORE_WORDS } from './commands/names.js';
import { EXIT_NO_DAEMON } from './examples.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const XENO = path.join(REPO, 'bin/xeno.cjs');

test('the core entry registers the core families as the whole table has them, and nothing else', () => {
  assert.deepEqual(CORE_COMMAND_FAMILIES.map((f) => f.key), [...CORE_FAMILIES]);
  for (const f of CORE_COMMAND_FAMILIES) {
    assert.deepEqual(f.commands, COMMAND_FAMILIES.find((x) => x.key === f.key)!.commands);
    assert.equal(f.register, COMMAND_FAMILIES.find((x) => x.key === f.key)!.register);
  }
  const p = new Command('xeno');
  registerCoreCommands(p);
  assert.deepEqual(p.commands.flatMap((c) => [c.name(), ...c.aliases()]), [...CORE_WORDS]);
});

test('the loader picks the core bundle by the command word; both bundles answer the same', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'xeno-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const hook = path.join(dir, 'which.cjs');
  writeFileSync(hook, `const fs = require('node:fs'); const read = fs.readFileSync;
fs.readFileSync = function (f, ...a) { if (/xeno-(core|code)\\.cjs$/.test(String(f))) process.stderr.write('BUNDLE ' + path(f) + '\\n'); return read.call(this, f, ...a); };
function path(f) { return String(f).split('/').pop(); }\n`);
  const run = (...args: string[]) => {
    const r = spawnSync(process.execPath, ['--require', hook, XENO, ...args], { env: { ...process.env, XENO_SOCKET: path.join(dir, 'none.sock') }, encoding: 'utf8' });
    return { code: r.status, bundle: /BUNDLE (\S+)/.exec(r.stderr)?.[1], stderr: r.stderr.replace(/BUNDLE \S+\n/, '') };
  };
  for (const [args, bundle] of [
    [['list'], 'xeno-core.cjs'],
    [['li', '-l'], 'xeno-core.cjs'],
    [['-s', path.join(dir, 'none.sock'), 'mem-set', 'web', '128'], 'xeno-core.cjs'],
    [['--socket', 'info', 'destroy', 'web'], 'xeno-core.cjs'], // the socket's value is not the command
    [['info'], 'xeno-code.cjs'],
    [['lis'], 'xeno-code.cjs'], // a prefix: the whole bundle expands it
    [['migrate', 'web', 'h2'], 'xeno-code.cjs'],
    [['help'], 'xeno-code.cjs'],
  ] as Array<[string[], string]>) {
    assert.equal(run(...args).bundle, bundle, `xeno ${args.join(' ')}`);
  }
  const core = run('list');
  const whole = run('lis');
  assert.equal(core.code, EXIT_NO_DAEMON);
  assert.deepEqual(core, { ...whole, bundle: 'xeno-core.cjs' }, 'same exit code and message from either bundle');
  assert.match(run('list', '--help').stderr + spawnSync(process.execPath, [XENO, 'list', '--help'], { encoding: 'utf8' }).stdout, /Usage: xeno list\|li/);
});
