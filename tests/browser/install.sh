#!/usr/bin/env bash
# Installs the browser test's npm packages (the exact versions of
# package-lock.json) into tests/browser/node_modules when they are missing
# or older than the lock file. Quiet when up to date; without npm it says so
# and leaves it (test_flv_kinds then skips its browser check).
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v npm >/dev/null 2>&1; then
  echo "npm not found: the browser test will be skipped (deploy/local/deps.sh installs it)" >&2
  exit 0
fi
stamp=node_modules/.package-lock.json
if [ -f "$stamp" ] && [ ! package-lock.json -nt "$stamp" ] && [ ! package.json -nt "$stamp" ]; then
  exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
