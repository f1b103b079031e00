#!/usr/bin/env bash
# xeno's main job: set everything up, install xeno as a system daemon (scripts/install.sh: xeno and
# xm on PATH, xenod, /etc/xeno, the systemd units), start xenod (systemctl when systemd runs, else
# in the background the way the unit does), define and start the demo guest on a disk image of its
# own (/var/lib/xeno-images/demo.ext4: the tests never share it), then show `xeno list` and its console.
#
# XENO_DEMO_ROOT=DIR runs the same demo contained in DIR (install with DESTDIR=DIR, state, socket and
# images under DIR; what the test suite does); XENO_DEMO_SETUP=0 skips scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
[ "${XENO_DEMO_SETUP:-1}" = 0 ] || bash scripts/setup.sh

root=${XENO_DEMO_ROOT:-}
DESTDIR=$root bash scripts/install.sh
# Contained: the daemon's auto dir is the root's too (nothing of the host's is started).
[ -z "$root" ] || grep -q "^(xeno-auto-dir $root" "$root/etc/xeno/xend-config.sxp" || echo "(xeno-auto-dir $root/etc/xeno/auto)" >> "$root/etc/xeno/xend-config.sxp"
state=$root/var/lib/xeno
export XENO_SOCKET=$root/run/xeno/xenod.sock
xeno() { "$root/usr/bin/xeno" "$@"; }

if ! xeno list >/dev/null 2>&1; then
  if [ -z "$root" ] && [ -d /run/systemd/system ]; then
    systemctl enable --now xenod.service xendomains.service
  else
    # No systemd: run xenod as the unit's ExecStart does, detached from this shell.
    mkdir -p "$state" "$(dirname "$XENO_SOCKET")"
    echo "demo: starting xenod (log: $state/xenod.log)"
    args=(--config "$root/etc/xeno/xend-config.sxp")
    [ -z "$root" ] || args+=(--state-dir "$state" --socket "$XENO_SOCKET")
    setsid nohup "$root/usr/sbin/xenod" "${args[@]}" >>"$state/xenod.out" 2>&1 < /dev/null &
  fi
  for _ in $(seq 300); do xeno list >/dev/null 2>&1 && break; sleep 0.1; done
fi
xeno info | grep -E '^(accel|qemu_version|free_memory)'

# The demo guest's own copies of the guest image: nothing else ever opens them.
images=$root/var/lib/xeno-images # outside the state dir: xenod refuses guests its own files
mkdir -p "$images"
if xeno domid demo >/dev/null 2>&1; then xeno destroy demo; fi
for f in vmlinuz initrd.img; do cp "guest/out/$f" "$images/demo-$f"; done
[ -f "$images/demo.ext4" ] || cp --sparse=always guest/out/disk.ext4 "$images/demo.ext4"
cfg=$root/etc/xeno/demo.cfg
sed -e "s|guest/out/vmlinuz|$images/demo-vmlinuz|" -e "s|guest/out/initrd.img|$images/demo-initrd.img|" \
    -e "s|target=guest/out/disk.ext4|target=$images/demo.ext4|" -e 's|^# Paths are relative.*|# Written by scripts/demo.sh: the demo guest on images of its own.|' \
    examples/demo.cfg > "$cfg"
xeno new "$cfg"
xeno start demo
echo "demo: waiting for the guest's heartbeat..."
for _ in $(seq 240); do
  grep -q 'heartbeat 3' "$state/console/demo.log" 2>/dev/null && break
  sleep 0.5
done
xeno list --all
echo "--- console of demo (xeno console demo --history; Ctrl-] detaches) ---"
tail -n 12 "$state/console/demo.log"
echo
echo "demo: the guest keeps running. Try: xeno console demo | xeno shutdown -w demo | xeno destroy demo"
echo "      xeno and xm are installed in $root/usr/bin (man xeno, xeno help CMD); the demo's config: $cfg"
