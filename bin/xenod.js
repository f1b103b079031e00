#!/usr/bin/env -S node --max-semi-space-size=4
// The flags on the line above are packaging/xenod.node-flags (test/install.test.ts checks).
import '../dist/src/daemon/main.js';
