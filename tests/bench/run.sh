#!/usr/bin/env bash
# Benchmarks, on demand (not in CI). Builds an optimised, sanitizer-free
# controller into build-bench/ and runs every benchmark side by side with
# its baseline. Usage: tests/bench/run.sh [api] [--quick]
set -euo pipefail
cd "$(dirname "$0")/../.."
CASCADE_BENCH_DEPS=1 bash deploy/local/deps.sh
cmake -S . -B build-bench -DSANITIZE=OFF -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench -j"$(nproc)" >/dev/null
export CASCADE_BIN_DIR="$PWD/build-bench/bin"
exec python3 tests/bench/bench_api.py "$@"
