#!/usr/bin/env node
// The CLI, bundled at build time into one CommonJS file (see scripts/bundle-cli.mjs).
require('../dist/cli-bundle/xeno.cjs');
