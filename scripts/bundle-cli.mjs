// Bundles the CLI into one ES module (dist/xeno-cli.mjs): one file to load instead of dozens,
// so `xeno list` costs little more than Node's own start-up.
import { build } from 'esbuild';

const result = await build({
  entryPoints: ['src/cli/main.ts'],
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  outfile: 'dist/xeno-cli.mjs',
  logLevel: 'warning',
  metafile: process.argv.includes('--analyze'),
  // commander is CommonJS: give its require() calls a real require.
  banner: { js: "import { createRequire as __xenoRequire } from 'node:module'; const require = __xenoRequire(import.meta.url);" },
});
if (result.metafile) {
  const inputs = Object.entries(result.metafile.inputs).sort((a, b) => b[1].bytes - a[1].bytes).slice(0, 15);
  for (const [file, info] of inputs) console.log(String(info.bytes).padStart(8), file);
}
