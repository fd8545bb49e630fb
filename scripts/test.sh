#!/usr/bin/env bash
# Runs every test of the project. On a fresh machine it sets up what the tests
# need first: the JavaScript interoperability harness (when present), the
# browser page (web/, built with npm; the browser tests also need Chromium,
# which .ci/run installs) and, when
# a PostgreSQL server answers on 127.0.0.1:5432, the DSN of its "test"
# database. Extra arguments go to `go test`.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${RENDEZVOUS_TEST_POSTGRES_DSN:-}" ] && (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  export RENDEZVOUS_TEST_POSTGRES_DSN="postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
fi
if [ -f interop/js/package.json ] && [ -x interop/js/setup.sh ]; then
  interop/js/setup.sh
fi
if command -v npm >/dev/null && [ -x web/setup.sh ]; then
  web/setup.sh
fi

go test -timeout 10m "$@" ./...
