#!/usr/bin/env bash
# Installs a built tree (npm run build) as a system daemon:
#   PREFIX/bin/xeno (and xm), PREFIX/sbin/xenod, PREFIX/lib/xeno (code + production node_modules),
#   SYSCONFDIR/xeno/xend-config.sxp (only if absent: never overwritten), SYSCONFDIR/xeno/auto/,
#   systemd units xenod.service + xendomains.service, bash completion, man pages xeno(1), xm(1),
#   xenod(8), xeno.cfg(5).
# PREFIX (default /usr), SYSCONFDIR (default /etc), DESTDIR (default empty: the real system).
# With DESTDIR empty and systemd running, the units are loaded (not enabled: `systemctl enable --now
# xenod xendomains`).
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/usr}
SYSCONFDIR=${SYSCONFDIR:-/etc}
DESTDIR=${DESTDIR:-}
UNITDIR=${UNITDIR:-$PREFIX/lib/systemd/system}
[ -f dist/.build-stamp ] && [ -f dist/cli-bundle/xeno.cjs ] || { echo "install: build first (npm run build)" >&2; exit 1; }
node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' || { echo "install: Node.js >= 20 is needed" >&2; exit 1; }

root=$DESTDIR
lib=$root$PREFIX/lib/xeno
inst() { install -D -m "$1" "$2" "$3"; }

# The code: compiled modules without tests or source maps, the CLI bundle (and V8's code cache for
# it), production dependencies.
rm -rf "$lib"
mkdir -p "$lib/dist"
(cd dist && find src cli-bundle -type f -name '*.js' -o -type f -name '*.cjs' -o -type f -name '*.cjs.cache' | grep -v '\.test\.js$' | while read -r f; do install -D -m 0644 "$f" "$lib/dist/$f"; done)
install -m 0644 package.json "$lib/package.json"
node -e '
  const l = require("./package-lock.json");
  for (const [k, v] of Object.entries(l.packages))
    if (k.startsWith("node_modules/") && !v.dev && k.split("node_modules/").length === 2) console.log(k);
' | while read -r m; do mkdir -p "$lib/$(dirname "$m")"; cp -a "$m" "$lib/$m"; done
find "$lib/node_modules" -name '*.md' -delete 2>/dev/null || true

# Launchers.
# $4: the V8 flags (xenod's from packaging/xenod.node-flags: its young generation's size).
launcher() { mkdir -p "$(dirname "$3")"; sed -e "s|@WHAT@|$1|g" -e "s|@ENTRY@|$2|g" -e "s|@NODE_FLAGS@|$4|g" packaging/bin/launcher.sh > "$3"; chmod 0755 "$3"; }
launcher xeno dist/cli-bundle/xeno.cjs "$root$PREFIX/bin/xeno" ""
launcher xenod dist/src/daemon/main.js "$root$PREFIX/sbin/xenod" "$(grep -v '^#' packaging/xenod.node-flags | xargs)"
ln -sf xeno "$root$PREFIX/bin/xm"

# Configuration: the commented defaults, never over an admin's file.
conf=$root$SYSCONFDIR/xeno/xend-config.sxp
if [ -e "$conf" ]; then
  cmp -s examples/xend-config.sxp "$conf" || echo "install: keeping your $SYSCONFDIR/xeno/xend-config.sxp (the new defaults: $PREFIX/share/doc/xeno/xend-config.sxp)"
else
  inst 0644 examples/xend-config.sxp "$conf"
fi
mkdir -p "$root$SYSCONFDIR/xeno/auto"

# systemd units.
for u in xenod xendomains; do
  sed -e "s|@SBINDIR@|$PREFIX/sbin|g" -e "s|@BINDIR@|$PREFIX/bin|g" -e "s|@SYSCONFDIR@|$SYSCONFDIR|g" "packaging/systemd/$u.service.in" > "packaging/systemd/$u.service.tmp"
  inst 0644 "packaging/systemd/$u.service.tmp" "$root$UNITDIR/$u.service"
  rm -f "packaging/systemd/$u.service.tmp"
done

# Completion, man pages, docs.
comp=$root$PREFIX/share/bash-completion/completions
inst 0644 packaging/bash-completion/xeno "$comp/xeno"
ln -sf xeno "$comp/xm"
for page in docs/man/*.[0-9]; do
  sec=${page##*.}
  mkdir -p "$root$PREFIX/share/man/man$sec"
  gzip -9n -c "$page" > "$root$PREFIX/share/man/man$sec/$(basename "$page").gz"
done
ln -sf xeno.1.gz "$root$PREFIX/share/man/man1/xm.1.gz"
doc=$root$PREFIX/share/doc/xeno
for f in README.md docs/comparison.md docs/tutorial.md docs/save-format.md examples/xend-config.sxp examples/demo.cfg examples/demo-xm.cfg; do
  [ -f "$f" ] && inst 0644 "$f" "$doc/$(basename "$f")"
done

if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
echo "install: xeno installed under ${DESTDIR:-/}${DESTDIR:+ }(PREFIX=$PREFIX)"
