/** `npm run bench -- NAME [--rounds N]`: runs bench/NAME.ts. */
const BENCHES = ['create', 'cli', 'runtime', 'save-restore', 'net', 'migrate', 'sampler', 'storage', 'ha', 'pool-scale'];
const name = process.argv[2];
if (!name || !BENCHES.includes(name)) {
  process.stderr.write(`usage: npm run bench -- ${BENCHES.join('|')} [--rounds N]\n`);
  process.exit(2);
}
const mod = (await import(`./${name}.js`)) as { run: () => Promise<void> };
await mod.run();
// `storage` also runs the --copy-storage comparison (bench/storage-copy.ts) after the throughput one.
if (name === 'storage') await ((await import('./storage-copy.js')) as { run: () => Promise<void> }).run();
