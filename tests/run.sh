#!/usr/bin/env bash
# The whole test suite: installs missing Debian packages and the browser
# test's npm packages (tests/browser), builds with AddressSanitizer +
# UndefinedBehaviorSanitizer into build/, runs ctest.
# Extra arguments go to ctest (e.g. -L unit, -R clients).
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/local/deps.sh
bash tests/browser/install.sh
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DSANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
cd build
exec ctest --output-on-failure --timeout 600 -j"$jobs" "$@"
