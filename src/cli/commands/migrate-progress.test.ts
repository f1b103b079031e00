import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MigrateProgressView } from './migrate-progress.js';

const MiB = 1024 * 1024;

test('off a terminal: one line when the mirror starts, one when the disks are in sync, none for the RAM', async () => {
  const lines: string[] = [];
  const v = new MigrateProgressView('web', false, (l) => lines.push(l));
  v.update({ status: 'mirroring', transferred: 0, remaining: 512 * MiB, total: 512 * MiB });
  v.update({ status: 'mirroring', transferred: 300 * MiB, remaining: 212 * MiB, total: 512 * MiB });
  v.update({ status: 'mirroring', transferred: 520 * MiB, remaining: 0, total: 520 * MiB });
  v.update({ status: 'active', transferred: 10 * MiB, remaining: 100 * MiB, total: 128 * MiB });
  v.update({ status: 'active', transferred: 90 * MiB, remaining: 20 * MiB, total: 128 * MiB });
  await v.stop();
  assert.equal(lines.length, 2, lines.join('\n'));
  assert.equal(lines[0], 'migrate web: mirroring its disks to the target: 512.0 MiB to copy');
  assert.match(lines[1]!, /^migrate web: the disks are in sync \(520\.0 MiB in \d+\.\d s\); copying the RAM$/);
});

test('a migration without --copy-storage prints nothing off a terminal', async () => {
  const lines: string[] = [];
  const v = new MigrateProgressView('web', false, (l) => lines.push(l));
  v.update({ status: 'active', transferred: 10 * MiB, remaining: 100 * MiB, total: 128 * MiB });
  await v.stop();
  assert.deepEqual(lines, []);
});
