/**
 * What an operator reads cannot drift from what xeno does: the man pages are regenerated and
 * compared with docs/man/; the guest key table names exactly the keys the parser knows; the example
 * xend-config.sxp documents every daemon key and parses to the defaults; xenod(8)'s options are
 * those of `xenod --help`; every command has an example.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { KNOWN_KEYS } from '../config/domain-config.js';
import { HANDLED, parseDaemonConfig } from '../config/daemon-config.js';
import { DOMAIN_KEY_DOCS } from '../config/key-docs.js';
import { MANAGED_KEYS } from '../config/managed-keys.js';
import { defaultDaemonConfig, operatingKeys } from '../model/daemon-config.js';
import { EXAMPLES } from './examples.js';
import { REPO_ROOT, manPages } from './man-dump.js';
import { XENOD_OPTIONS, sxpKeyDocs } from './manpage.js';
import { buildProgram } from './program.js';

describe('operator documentation', () => {
  it('docs/man/ is what the generator writes (npm run man)', () => {
    for (const [file, text] of Object.entries(manPages())) {
      assert.equal(readFileSync(path.join(REPO_ROOT, 'docs/man', file), 'utf8'), text, `docs/man/${file} is out of date: npm run man`);
    }
  });

  it('xeno.cfg(5) documents exactly the keys the parser knows', () => {
    assert.deepEqual(DOMAIN_KEY_DOCS.map((k) => k.key).sort(), [...KNOWN_KEYS, ...MANAGED_KEYS].sort());
  });

  it('the example xend-config.sxp documents every daemon key, and its values are the defaults', () => {
    const sxp = readFileSync(path.join(REPO_ROOT, 'examples/xend-config.sxp'), 'utf8');
    const documented = sxpKeyDocs(sxp);
    assert.deepEqual(documented.map((k) => k.key).sort(), [...HANDLED].sort());
    for (const k of documented) assert.ok(k.doc.length > 10, `${k.key} has its comment`);
    const warnings: string[] = [];
    const c = parseDaemonConfig(sxp, 'xend-config.sxp', (w) => warnings.push(w));
    assert.deepEqual(warnings, []);
    const { autoDir, onHostStop, hostStopTimeout } = operatingKeys(c);
    assert.deepEqual({ autoDir, onHostStop, hostStopTimeout }, operatingKeys(defaultDaemonConfig()));
    assert.deepEqual({ ...c, autoDir: undefined, onHostStop: undefined, hostStopTimeout: undefined }, { ...defaultDaemonConfig(), autoDir: undefined, onHostStop: undefined, hostStopTimeout: undefined });
  });

  it("xenod(8)'s options are xenod's", () => {
    const help = execFileSync(process.execPath, [path.join(REPO_ROOT, 'bin/xenod.js'), '--help'], { encoding: 'utf8' });
    const fromHelp = [...new Set(help.match(/--[a-z][a-z-]+/g))].sort();
    assert.deepEqual(XENOD_OPTIONS.map((o) => o.flags.split(' ')[0]).sort(), [...new Set([...fromHelp, '--help', '--version'])].sort());
  });

  it('every command has an example, and every example is of a command', () => {
    const names = buildProgram().commands.map((c) => c.name()).filter((n) => !n.startsWith('__'));
    assert.deepEqual(Object.keys(EXAMPLES).sort(), [...names, 'help'].sort()); // help: commander's own
    for (const [cmd, lines] of Object.entries(EXAMPLES)) for (const l of lines) assert.ok(l.startsWith(`xeno ${cmd}`), l);
  });
});
