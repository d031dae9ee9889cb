#!/usr/bin/env bash
# Benchmarks, on demand (not in CI). Builds optimised, sanitizer-free
# binaries into build-bench/ and runs the benchmarks named (default: all),
# each side by side with its baseline or peer in the same run.
#   tests/bench/run.sh [api|control|media|quic|cascade|streamauth ...] [-- extra arguments for each]
set -euo pipefail
cd "$(dirname "$0")/../.."
CASCADE_BENCH_DEPS=1 bash deploy/local/deps.sh
cmake -S . -B build-bench -DSANITIZE=OFF -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench -j"$(nproc)" >/dev/null
export CASCADE_BIN_DIR="$PWD/build-bench/bin"
benches=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do benches+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
[ ${#benches[@]} -eq 0 ] && benches=(api control media quic cascade)  # also: rejoin, streamauth
for b in "${benches[@]}"; do
  echo "== $b"
  python3 "tests/bench/bench_$b.py" "$@"
done
