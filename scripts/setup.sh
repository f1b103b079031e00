#!/usr/bin/env bash
# Installs what xeno needs on a fresh Debian 12 machine (as root), builds it and its test guest.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(qemu-system-x86 qemu-utils busybox-static e2fsprogs lz4 zstd xz-utils debootstrap openssh-client openssl curl cpio dnsmasq-base nftables iproute2 iperf3 util-linux kmod socat tcpdump acl xorriso systemd python3 bash-completion chromium etcd-server etcd-client)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi
# Build only when a source is newer than the last build (tests may be reading dist/ right now).
stamp=dist/.build-stamp
if [ ! -f "$stamp" ] || [ -n "$(find src test bench scripts package.json tsconfig.json -newer "$stamp" -print -quit)" ]; then
  echo "setup: building"
  npm run --silent build
fi
echo "setup: test guest"
bash guest/build.sh >/dev/null
echo "setup: done"
