#!/usr/bin/env bash
# Makes a `rendezvous serve` hold N (default 10,000) client connections at
# once, each from its own loopback address (127.10.y.z), and reports serve's
# resident memory and goroutines before and while it holds them. Loopback
# only; at most N connections; stops by itself within 5 minutes. Not run by
# CI. Usage: scripts/connload.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-10000}"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
bin="$(mktemp -d)/rendezvous"
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./cmd/rendezvous
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GB", $2/1e6}' /proc/meminfo), ulimit -n $(ulimit -n), load $(cut -d' ' -f1 /proc/loadavg)"
timeout 330 go run ./scripts/connload -bin "$bin" -n "$n" -timeout 5m
