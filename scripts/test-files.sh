#!/usr/bin/env bash
# The suite's compiled test files for `node --test --test-concurrency=2`: the slowest first (measured:
# a full run's durations, seconds in the comment), then every other one in name order. node --test
# starts files in the order given, so longest-first lets the two lanes end together instead of one
# lane running a long file alone at the end. images.test stays first: on a fresh machine its first
# run builds the debootstrap base (minutes), beside everything else.
set -euo pipefail
cd "$(dirname "$0")/.."
slow=(
  test/images            # 290: a real Debian guest, three boots
  test/crash             # 195: xenod killed at every crash point
  test/pool-ha           # 170: the pool lab, etcd faults
  test/network           # 150: bridge, NAT and route through xenod
  test/runtime           # 100
  src/pool/ha/ha         # 170: HA on a real 3-member etcd
  test/lifecycle         # 100
  test/web               # 75: real Chromium
  test/pool-ha-fence     # 160: fencing on the pool lab
  test/tutorial-debian   # 75: chapter 10, a real Debian guest
  test/migration         # 65
  test/pool              # 75
  test/storage-copy      # 65
)
# (The three timing-sensitive HA files are spread out: two of them side by side load the 2 cores with
# two etcd clusters and six xenods at once.)
listed=()
for f in "${slow[@]}"; do
  [ -f "dist/$f.test.js" ] && listed+=("dist/$f.test.js")
done
printf '%s\n' "${listed[@]}"
find dist/src dist/test -name '*.test.js' | sort | grep -vxF -f <(printf '%s\n' "${listed[@]}")
