#!/usr/bin/env node
// The CLI is bundled into one file at build time: fewer module loads, a faster `xeno list`.
import '../dist/xeno-cli.mjs';
