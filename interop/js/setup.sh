#!/usr/bin/env bash
# Installs the JavaScript interoperability harness: the exact versions of
# package-lock.json, with better-sqlite3 compiled against the local Node
# headers (no prebuilt binary can be downloaded here).
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "interop/js: node and npm are needed" >&2
  exit 1
fi
if [ -f node_modules/.package-lock.json ] && cmp -s package-lock.json .installed-lock 2>/dev/null; then
  exit 0
fi
if [ ! -f /usr/include/node/node.h ] && command -v apt-get >/dev/null; then
  apt-get update -qq && apt-get install -y -qq libnode-dev >/dev/null
fi
npm_config_nodedir=/usr npm ci --no-audit --no-fund --loglevel=error
cp package-lock.json .installed-lock
