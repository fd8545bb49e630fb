#!/usr/bin/env bash
# Builds the browser page: the exact versions of package-lock.json (npm ci,
# no install scripts: nothing here needs one, and the Node.js WebRTC addon
# that @libp2p/webrtc brings is never used by a browser bundle), then
# esbuild bundles src/ into dist/page.js. Re-runs npm ci only when
# package-lock.json changed since the last install.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "web: node and npm are needed" >&2
  exit 1
fi
if ! { [ -f node_modules/.package-lock.json ] && cmp -s package-lock.json node_modules/.installed-lock; }; then
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.installed-lock
fi
npm run --silent build
