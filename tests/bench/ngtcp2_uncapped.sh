#!/usr/bin/env bash
# An experiment, on demand: the cascade latency rows with Debian's libngtcp2
# 0.12.1 and then with the same library rebuilt without its congestion-window
# cap (ngtcp2 0.12's cubic and reno stop growing the window at
# 2.89 x max delivery rate x min RTT; ngtcp2 1.8.0 removed that cap, upstream
# commit 702ba868 "Remove target_cwnd, use is_app_limited flag instead").
# Both runs use quic.cc cubic. docs/performance.md says what it shows.
#
#   tests/bench/ngtcp2_uncapped.sh NGTCP2_0.12.1_SOURCE_DIR [bench_cascade options]
#
# The source tree is ngtcp2 0.12.1 as released (`apt-get source ngtcp2` with a
# deb-src line for bookworm, or the v0.12.1 tag of github.com/ngtcp2/ngtcp2);
# it is copied, never modified. Only libngtcp2.so.9 is rebuilt; the agents
# load it through LD_LIBRARY_PATH, everything else is Debian's.
set -euo pipefail
src=${1:?usage: $0 NGTCP2_0.12.1_SOURCE_DIR [bench_cascade options]}
shift
cd "$(dirname "$0")/../.."
grep -q 'ngtcp2.*0\.12\.1\|VERSION 0\.12\.1' "$src/CMakeLists.txt" ||
  { echo "$src is not ngtcp2 0.12.1" >&2; exit 2; }
work=$(mktemp -d /tmp/ngtcp2-uncapped.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -a "$src" "$work/src"
python3 - "$work/src/lib/ngtcp2_cc.c" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
cap = "if (cstat->min_rtt != UINT64_MAX && cc->max_delivery_rate_sec) {"
if s.count(cap) != 2:
    sys.exit("ngtcp2_cc.c: the two target_cwnd blocks (reno, cubic) not found")
open(p, "w").write(s.replace(cap, "if (0) { /* no target_cwnd cap */"))
PY
cmake -S "$work/src" -B "$work/build" -DENABLE_OPENSSL=OFF \
  -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/build" --target ngtcp2 -j"$(nproc)" >/dev/null
CASCADE_BENCH_DEPS=1 bash deploy/local/deps.sh
cmake -S . -B build-bench -DSANITIZE=OFF -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench -j"$(nproc)" >/dev/null
export CASCADE_BIN_DIR="$PWD/build-bench/bin"
echo "== Debian's libngtcp2 0.12.1, quic.cc cubic"
python3 tests/bench/bench_cascade.py --only cascade --latency-only --cc cubic "$@"
echo "== libngtcp2 0.12.1 without the window cap, quic.cc cubic"
LD_LIBRARY_PATH="$work/build/lib" \
  python3 tests/bench/bench_cascade.py --only cascade --latency-only --cc cubic "$@"
