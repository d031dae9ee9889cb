#!/usr/bin/env bash
# Refreshes vendor/mpegts.js from the npm registry: installs the exact
# version of package-lock.json (npm ci, integrity checked) in a scratch
# directory and copies its dist/mpegts.js behind the license header kept at
# the top of the current file. Run it after changing the pinned version; the
# build and the controller never need npm.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp package.json package-lock.json "$tmp"/
(cd "$tmp" && npm ci --no-audit --no-fund --loglevel=error)
sed -n '1,/\*\/$/p' vendor/mpegts.js >"$tmp/header"
{ cat "$tmp/header"
  sed -e '1{/For license information/d}' -e '/^\/\/# sourceMappingURL=/d' \
      "$tmp/node_modules/mpegts.js/dist/mpegts.js"; } >vendor/mpegts.js.new
cp "$tmp/node_modules/mpegts.js/LICENSE" vendor/LICENSE-mpegts.txt
mv vendor/mpegts.js.new vendor/mpegts.js
echo "vendor/mpegts.js: mpegts.js $(node -p "require('$tmp/node_modules/mpegts.js/package.json').version")"
