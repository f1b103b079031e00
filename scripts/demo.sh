#!/usr/bin/env bash
# xeno's main job: set everything up, start xenod on its embedded defaults (state in /var/lib/xeno,
# socket /run/xeno/xenod.sock), boot examples/demo.cfg, then show `xeno list` and the guest's console.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

xeno() { node bin/xeno.cjs "$@"; }
if ! xeno list >/dev/null 2>&1; then
  mkdir -p /var/lib/xeno
  echo "demo: starting xenod (log: /var/lib/xeno/xenod.log)"
  nohup node bin/xenod.js >>/var/lib/xeno/xenod.out 2>&1 &
  for _ in $(seq 100); do xeno list >/dev/null 2>&1 && break; sleep 0.1; done
fi
xeno info | grep -E '^(accel|qemu_version|free_memory)'
if xeno domid demo >/dev/null 2>&1; then xeno destroy demo; fi
xeno create examples/demo.cfg
echo "demo: waiting for the guest's heartbeat..."
for _ in $(seq 120); do
  grep -q 'heartbeat 3' /var/lib/xeno/console/demo.log 2>/dev/null && break
  sleep 0.5
done
xeno list
echo "--- console of demo (xeno console demo --history; Ctrl-] detaches) ---"
tail -n 12 /var/lib/xeno/console/demo.log
echo
echo "demo: the guest keeps running. Try: xeno console demo | xeno shutdown -w demo | xeno destroy demo"
echo "      (bin/xeno.cjs is the CLI; npm link, or alias xeno='node $PWD/bin/xeno.cjs')"
