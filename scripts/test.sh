#!/usr/bin/env bash
# The whole test suite, after setting up what it needs (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm test
