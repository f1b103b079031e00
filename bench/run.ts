/**
 * `npm run bench -- NAME [--rounds N]`: runs bench/NAME.ts; `npm run bench -- all` runs every entry
 * of ALL in turn and writes the summary table (each operation against its raw-QEMU baseline measured
 * in the same run) to stdout and bench/RESULTS.md.
 */
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO } from '../test/helpers/harness.js';
import { results, resultsTable } from './lib.js';

const BENCHES = ['create', 'cli', 'runtime', 'save-restore', 'net', 'migrate', 'sampler', 'scale', 'storage', 'ha', 'pool-scale'];
/**
 * What `all` runs (each must finish in a couple of minutes; `net` and `sampler` stay separate; the
 * storage, ha and pool-scale benches are run by name until their run time fits `all`'s ~10 minutes).
 */
const ALL = ['migrate', 'save-restore', 'cli', 'runtime', 'create', 'scale'];

const name = process.argv[2];
if (!name || !(BENCHES.includes(name) || name === 'all')) {
  process.stderr.write(`usage: npm run bench -- all|${BENCHES.join('|')} [--rounds N]\n`);
  process.exit(2);
}
const failed: string[] = [];
const t0 = Date.now();
const list = name === 'all' ? ALL : [name];

/** The table so far; `all` rewrites bench/RESULTS.md after each bench, so a cut-short run keeps what it measured. */
function summary(done: number): string {
  const load = os.loadavg().map((l) => l.toFixed(2)).join(' ');
  return (
    `# xeno benchmark results\n\n\`npm run bench -- ${process.argv.slice(2).join(' ')}\`, ${new Date().toISOString()}, ${os.cpus().length} CPUs, ` +
    `load average ${load}, ${Math.round((Date.now() - t0) / 1000)} s` +
    (done < list.length ? `, PARTIAL: ${done} of ${list.length} benches run (${list.slice(0, done).join(', ')})` : '') + '.\n\n' +
    resultsTable(results) +
    (failed.length ? `\nFailed benches:\n${failed.map((f) => `- ${f}`).join('\n')}\n` : '')
  );
}

for (const [i, b] of list.entries()) {
  const mod = (await import(`./${b}.js`)) as { run: () => Promise<void> };
  try {
    await mod.run();
    // `storage` also runs the --copy-storage comparison (bench/storage-copy.ts) after the throughput one.
    if (b === 'storage') await ((await import('./storage-copy.js')) as { run: () => Promise<void> }).run();
  } catch (e) {
    if (name !== 'all') throw e;
    failed.push(`${b}: ${e instanceof Error ? e.message : String(e)}`);
    process.stderr.write(`bench ${b} failed: ${e instanceof Error ? e.stack : String(e)}\n`);
  }
  if (name === 'all') writeFileSync(path.join(REPO, 'bench/RESULTS.md'), summary(i + 1));
}
if (results.length) process.stdout.write(`\n${summary(list.length)}`);
if (failed.length) process.exitCode = 1;
