// Bundles the CLI into one CommonJS file (dist/cli-bundle/xeno-code.cjs): one file to load instead of
// dozens, and no ES-module loader to start, so `xeno list` costs little more than Node's start-up.
// dist/cli-bundle/xeno.cjs (packaging/cli/load.cjs) runs it from a V8 code cache made here.
import { execFileSync } from 'node:child_process';
import { copyFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { build } from 'esbuild';

// child_process and crypto cost `xeno list` some 20 ms to load, and only some commands use them
// (commander requires child_process for subcommand executables xeno does not have): each is loaded
// at its first use instead. Safe because every use in the bundle is a property read at call time
// (`childProcess.spawn(...)`, `(0, import_node_crypto.randomUUID)()`). esbuild's ESM interop copies
// a module's property NAMES into getters up front: the names are listed here, at build time, so that
// this copy loads nothing.
const LAZY = /^(node:)?(child_process|crypto)$/;
const lazyBuiltins = {
  name: 'lazy-builtins',
  setup(b) {
    b.onResolve({ filter: LAZY }, (args) => (args.namespace === 'lazy-builtin' ? { path: args.path, external: true } : { path: args.path.replace(/^node:/, ''), namespace: 'lazy-builtin' }));
    b.onLoad({ filter: /.*/, namespace: 'lazy-builtin' }, (args) => ({
      loader: 'js',
      contents: `let m; const load = () => (m ??= require('node:${args.path}'));
const names = ${JSON.stringify(Object.keys(createRequire(import.meta.url)(args.path)))};
module.exports = new Proxy({}, {
  get: (_, k) => load()[k],
  has: (_, k) => names.includes(k) || k in load(),
  ownKeys: () => names,
  getOwnPropertyDescriptor: (_, k) => (names.includes(k) ? { value: undefined, writable: true, enumerable: true, configurable: true } : undefined),
});`,
    }));
  },
};

await build({
  entryPoints: ['src/cli/main.ts'],
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  outfile: 'dist/cli-bundle/xeno-code.cjs',
  logLevel: 'warning',
  // Only save/restore draws progress bars: cli-progress stays outside, loaded when shown; the
  // pool's etcd client (and gRPC) only for the pool commands.
  external: ['cli-progress', 'etcd3'],
  plugins: [lazyBuiltins],
  minifyWhitespace: true,
  minifySyntax: true,
});

copyFileSync('packaging/cli/load.cjs', 'dist/cli-bundle/xeno.cjs');
// The code cache, written after a `list` ran (against no daemon: its path compiled, nothing asked):
// V8 caches the functions compiled by then, not only the top level.
const cache = 'dist/cli-bundle/xeno-code.cjs.cache';
rmSync(cache, { force: true });
try {
  execFileSync(process.execPath, ['dist/cli-bundle/xeno.cjs', 'list'], { env: { ...process.env, XENO_SOCKET: '/nonexistent/xeno-build.sock', XENO_WRITE_CODE_CACHE: cache }, stdio: 'ignore' });
} catch {
  /* exits non-zero: no daemon, as meant */
}
