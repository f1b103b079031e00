#!/usr/bin/env bash
# Builds xeno_VERSION_ARCH.deb from the built tree (npm run build) with dpkg-deb: the files of
# scripts/install.sh (PREFIX=/usr), /etc/xeno/xend-config.sxp as a conffile (never overwritten on
# upgrade), maintainer scripts that enable xenod + xendomains. `apt install ./xeno_*.deb`.
# Usage: scripts/build-deb.sh [OUTDIR]   (default: the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-.}")
mkdir -p "$out"
version=$(node -p 'require("./package.json").version')
arch=$(dpkg --print-architecture) # better-sqlite3 is a native module
stage=$(mktemp -d "${TMPDIR:-/tmp}/xeno-deb.XXXXXX")
chmod 0755 "$stage"
trap 'rm -rf "$stage"' EXIT
DESTDIR=$stage PREFIX=/usr SYSCONFDIR=/etc UNITDIR=/lib/systemd/system bash scripts/install.sh >/dev/null
mkdir -p "$stage/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" packaging/debian/control.in > "$stage/DEBIAN/control"
echo /etc/xeno/xend-config.sxp > "$stage/DEBIAN/conffiles"
for s in postinst prerm postrm; do install -m 0755 "packaging/debian/$s" "$stage/DEBIAN/$s"; done
deb="$out/xeno_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz -z1 --build "$stage" "$deb" >/dev/null
echo "$deb"
