// Bundles the CLI into one CommonJS file (dist/cli-bundle/xeno.cjs): one file to load instead of
// dozens, and no ES-module loader to start, so `xeno list` costs little more than Node's start-up.
import { build } from 'esbuild';

await build({
  entryPoints: ['src/cli/main.ts'],
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  outfile: 'dist/cli-bundle/xeno.cjs',
  logLevel: 'warning',
  // Only save/restore draws progress bars: cli-progress stays outside, loaded when shown; the
  // pool's etcd client (and gRPC) only for the pool commands.
  external: ['cli-progress', 'etcd3'],
});
