import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Command } from 'commander';
import { formatList, formatUptime } from './format.js';
import { COMMAND_FAMILIES, COMMAND_NAMES } from './commands/index.js';
import { commandWord, expandPrefix, namesOf } from './prefix.js';
import { buildProgram } from './program.js';

const program = new Command('xeno');
for (const n of ['create', 'console', 'list', 'destroy', 'domid', 'domname', 'dmesg']) program.command(n);
const names = namesOf(program);

test('unambiguous prefixes expand to the command, ambiguous ones are refused', () => {
  assert.deepEqual(expandPrefix(names, ['li', '-l']), ['list', '-l']);
  assert.deepEqual(expandPrefix(names, ['cr', 'x.cfg']), ['create', 'x.cfg']);
  assert.deepEqual(expandPrefix(names, ['-s', '/tmp/s', 'des', 'web']), ['-s', '/tmp/s', 'destroy', 'web']);
  assert.deepEqual(expandPrefix(names, ['list']), ['list']);
  assert.throws(() => expandPrefix(names, ['c']), /ambiguous: create, console/);
  assert.throws(() => expandPrefix(names, ['dom']), /ambiguous/);
  assert.equal(commandWord(['-s', '/tmp/s', 'list', '-l']), 'list');
  assert.equal(commandWord(['--help']), undefined);
});

test("the command table's names are what each family registers; a command line builds its family only", () => {
  for (const f of COMMAND_FAMILIES) {
    const p = new Command('xeno');
    f.register(p);
    assert.deepEqual(p.commands.map((c) => [c.name(), ...c.aliases()]), f.commands.map((c) => [...c]));
  }
  const full = buildProgram();
  const all = namesOf(full).filter((c) => !c.name.startsWith('__'));
  assert.deepEqual(all, COMMAND_NAMES.map((c) => ({ name: c.name, aliases: [...c.aliases] })), 'same commands, same (help) order');
  for (const c of COMMAND_NAMES) {
    const one = buildProgram(c.aliases[0] ?? c.name);
    assert.ok(one.commands.some((x) => x.name() === c.name), `${c.name} is built for its own command line`);
    assert.ok(one.commands.length < full.commands.length, `only ${c.name}'s family`);
  }
  assert.equal(buildProgram('help').commands.length, full.commands.length, 'help shows every command');
  assert.equal(buildProgram('no-such').commands.length, full.commands.length, 'an unknown word is refused with every command known');
});

test('xm list columns: Name 40 wide, ID/Mem/VCPUs 5, State 10, Time(s) 9', () => {
  const text = formatList([
    { id: 0, name: 'Domain-0', uuid: '', state: 'running', stateFlags: 'r-----', memory: 750, maxmem: 750, vcpus: 4, maxvcpus: 4, cpuTime: 11794.3, uptime: 1, startTime: 0 },
    { id: 7, name: 'web', uuid: '', state: 'paused', stateFlags: '--p---', memory: 128, maxmem: 256, vcpus: 1, maxvcpus: 2, cpuTime: 2.04, uptime: 1, startTime: 0 },
  ]);
  assert.equal(
    text,
    'Name                                        ID   Mem VCPUs      State   Time(s)\n' +
      'Domain-0                                     0   750     4     r-----   11794.3\n' +
      'web                                          7   128     1     --p---       2.0\n',
  );
});

test('uptime is H:MM:SS, with days past 24 h', () => {
  assert.equal(formatUptime(59), '0:00:59');
  assert.equal(formatUptime(3661), '1:01:01');
  assert.equal(formatUptime(2 * 86400 + 5), '2 days, 0:00:05');
});
