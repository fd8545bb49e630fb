#!/usr/bin/env bash
# Soaks a `rendezvous serve` (embedded store, --limit-loopback, this
# machine's default limits) in mixed abuse from distinct loopback sources
# and reports its RSS, goroutines and a legitimate client's latency and
# failures before, during and after the abuse (see scripts/soak/main.go).
# Loopback only; stops by itself. Not run by CI.
# Usage: scripts/soak.sh [soak flags, e.g. -before 10s -during 10s -after 10s] [-- serve flags]
# The default phases take 1 + 5 + 1 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/rendezvous" ./cmd/rendezvous
go build -o "$tmp/soak" ./scripts/soak
echo "# $(nproc) cores, ulimit -n $(ulimit -n), load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$tmp/soak" -bin "$tmp/rendezvous" "$@"
