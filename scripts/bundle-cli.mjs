// Bundles the CLI into CommonJS files: one file to load instead of dozens, and no ES-module loader to
// start, so `xeno list` costs little more than Node's start-up. dist/cli-bundle/xeno-code.cjs has every
// command, xeno-core.cjs the core families' only (commands/names.ts: CORE_FAMILIES, 60 KB of 150).
// dist/cli-bundle/xeno.cjs (packaging/cli/load.cjs) picks one by the command word and runs it from a
// V8 code cache made here. Runs after tsc: it reads the core words from dist/src.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { build } from 'esbuild';
import { CORE_WORDS } from '../dist/src/cli/commands/names.js';

// child_process and crypto cost `xeno list` some 20 ms to load, and only some commands use them
// (commander requires child_process for subcommand executables xeno does not have); cli-progress
// draws only save/restore/migrate/create-image bars on a terminal: each is loaded at its first use
// instead. (Not through import(): V8 loses a script's dynamic-import callback for the functions it
// takes from the code cache below.) Safe because every use in the bundle is a property read at call time
// (`childProcess.spawn(...)`, `(0, import_node_crypto.randomUUID)()`). esbuild's ESM interop copies
// a module's property NAMES into getters up front: the names are listed here, at build time, so that
// this copy loads nothing.
const LAZY = /^((node:)?(child_process|crypto)|cli-progress)$/;
const lazyModules = {
  name: 'lazy-modules',
  setup(b) {
    b.onResolve({ filter: LAZY }, (args) => (args.namespace === 'lazy-module' ? { path: args.path, external: true } : { path: args.path.replace(/^node:/, ''), namespace: 'lazy-module' }));
    b.onLoad({ filter: /.*/, namespace: 'lazy-module' }, (args) => ({
      loader: 'js',
      contents: `let m; const load = () => (m ??= require('${args.path === 'cli-progress' ? args.path : `node:${args.path}`}'));
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

// Two bundles: every command, and the core families' only (a smaller file to read and run).
const BUNDLES = [
  { entry: 'src/cli/main.ts', out: 'dist/cli-bundle/xeno-code.cjs', cacheRun: ['info'] },
  { entry: 'src/cli/main-core.ts', out: 'dist/cli-bundle/xeno-core.cjs', cacheRun: ['list'] },
];
for (const b of BUNDLES) {
  await build({
    entryPoints: [b.entry],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    outfile: b.out,
    logLevel: 'warning',
    // The pool's etcd client (and gRPC) stays outside, loaded by the pool commands only.
    external: ['etcd3'],
    plugins: [lazyModules],
    minifyWhitespace: true,
    minifySyntax: true,
    minifyIdentifiers: true,
  });
}

// The loader, told which words are the core bundle's.
const loader = readFileSync('packaging/cli/load.cjs', 'utf8');
const marker = 'const CORE_WORDS = new Set([]);';
if (!loader.includes(marker)) throw new Error(`packaging/cli/load.cjs has no "${marker}" line to fill in`);
writeFileSync('dist/cli-bundle/xeno.cjs', loader.replace(marker, `const CORE_WORDS = new Set(${JSON.stringify(CORE_WORDS)});`));
// Each code cache, written after a command of that bundle ran (against no daemon: its path compiled,
// nothing asked): V8 caches the functions compiled by then, not only the top level.
for (const b of BUNDLES) {
  const cache = `${b.out}.cache`;
  rmSync(cache, { force: true });
  try {
    execFileSync(process.execPath, ['dist/cli-bundle/xeno.cjs', ...b.cacheRun], { env: { ...process.env, XENO_SOCKET: '/nonexistent/xeno-build.sock', XENO_WRITE_CODE_CACHE: cache }, stdio: 'ignore' });
  } catch {
    /* exits non-zero: no daemon, as meant */
  }
  if (!existsSync(cache)) throw new Error(`no code cache was written for ${b.out}`);
}
