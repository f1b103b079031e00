import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Command } from 'commander';
import { formatList, formatUptime } from './format.js';
import { expandPrefix } from './prefix.js';

const program = new Command('xeno');
for (const n of ['create', 'console', 'list', 'destroy', 'domid', 'domname', 'dmesg']) program.command(n);

test('unambiguous prefixes expand to the command, ambiguous ones are refused', () => {
  assert.deepEqual(expandPrefix(program, ['li', '-l']), ['list', '-l']);
  assert.deepEqual(expandPrefix(program, ['cr', 'x.cfg']), ['create', 'x.cfg']);
  assert.deepEqual(expandPrefix(program, ['-s', '/tmp/s', 'des', 'web']), ['-s', '/tmp/s', 'destroy', 'web']);
  assert.deepEqual(expandPrefix(program, ['list']), ['list']);
  assert.throws(() => expandPrefix(program, ['c']), /ambiguous: create, console/);
  assert.throws(() => expandPrefix(program, ['dom']), /ambiguous/);
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
