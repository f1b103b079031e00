#!/usr/bin/env node
// xeno's CLI entry: runs one of the two bundles scripts/bundle-cli.mjs made (xeno-core.cjs for the core
// families' commands, which `xeno list` and the like load alone; xeno-code.cjs for every command) from
// V8's code cache for it (BUNDLE.cache, made at build time), so that a command does not spend its first
// milliseconds compiling. A cache V8 rejects (another Node, another V8 flag) is only slower: V8
// compiles the source, as a plain require would.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');
const Module = require('node:module');

// The core commands' names and aliases (src/cli/commands/names.ts: CORE_WORDS), written in by the build.
const CORE_WORDS = new Set([]);

/** The command word: the first argument that is not a global option (-s/--socket take a value; src/cli/prefix.ts). */
function commandWord(argv) {
  let i = 0;
  while (i < argv.length && argv[i].startsWith('-')) i += argv[i] === '-s' || argv[i] === '--socket' ? 2 : 1;
  return argv[i];
}

const file = path.join(__dirname, CORE_WORDS.has(commandWord(process.argv.slice(2))) ? 'xeno-core.cjs' : 'xeno-code.cjs');
const cacheFile = `${file}.cache`;
let cachedData;
try {
  cachedData = fs.readFileSync(cacheFile);
} catch {
  /* no cache: compile */
}
const script = new vm.Script(Module.wrap(fs.readFileSync(file, 'utf8')), {
  filename: file,
  cachedData,
  // the bundle's import() of the modules it keeps outside (cli-progress, etcd3)
  importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
});
// The build writes the cache once the command given has run (its functions compiled by then).
const writeTo = process.env.XENO_WRITE_CODE_CACHE;
if (writeTo) process.once('exit', () => fs.writeFileSync(writeTo, script.createCachedData()));
const mod = { exports: {}, id: file, filename: file, loaded: false };
script.runInThisContext()(mod.exports, Module.createRequire(file), mod, file, __dirname);
