#!/usr/bin/env node
// xeno's CLI entry: runs the bundled code (xeno-code.cjs, made by scripts/bundle-cli.mjs) from V8's
// code cache for it (xeno-code.cjs.cache, made at build time), so that a command does not spend its
// first milliseconds compiling the bundle. A cache V8 rejects (another Node, another V8 flag) is
// only slower: V8 compiles the source, as a plain require would.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');
const Module = require('node:module');

const file = path.join(__dirname, 'xeno-code.cjs');
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
