#!/usr/bin/env bash
# Quick start: installs missing Debian packages, builds, and runs a local
# cascade in the foreground: a throwaway PostgreSQL, the controller and four
# agents in a tree (hq <- region-a <- edge-a1, edge-a2) with autopush and
# on-demand pull.
# Ctrl-C stops and removes everything. Ports: the controller's API on
# CASCADE_HTTP_PORT, the agents' HTTP-FLV on the next four, their own APIs
# (status pages, on loopback) on CASCADE_HTTP_PORT+11..+14. Environment:
#   CASCADE_HTTP_PORT (8080)  CASCADE_ADMIN_TOKEN (random)
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/local/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target cascade-controller cascade-agent
export CASCADE_BIN_DIR="$PWD/build/bin"
exec python3 deploy/local/stack.py "$@"
