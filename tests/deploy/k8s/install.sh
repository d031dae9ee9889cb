#!/usr/bin/env bash
# Installs the Kubernetes manifest check's npm packages (the exact versions of
# package-lock.json) into tests/deploy/k8s/node_modules when they are missing
# or older than the lock file. Quiet when up to date.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v npm >/dev/null 2>&1; then
  echo "npm not found (deploy/local/deps.sh installs it)" >&2
  exit 1
fi
stamp=node_modules/.package-lock.json
if [ -f "$stamp" ] && [ ! package-lock.json -nt "$stamp" ] && [ ! package.json -nt "$stamp" ]; then
  exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
