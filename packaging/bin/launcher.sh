#!/bin/sh
# xeno's installed launcher (@WHAT@): finds Node (>= 20) and runs xeno's code from ../lib/xeno
# relative to this script, so a DESTDIR or PREFIX install works where it lands.
set -e
self=$(readlink -f "$0")
lib=$(dirname "$self")/../lib/xeno
for n in "${XENO_NODE:-}" /usr/bin/node /usr/local/bin/node /usr/bin/nodejs "$(command -v node 2>/dev/null || true)"; do
  if [ -n "$n" ] && [ -x "$n" ]; then exec "$n" @NODE_FLAGS@ "$lib/@ENTRY@" "$@"; fi
done
echo "@WHAT@: Node.js (>= 20) not found: install nodejs, or set XENO_NODE to its path" >&2
exit 127
