#!/usr/bin/env bash
# Measures a point with `rendezvous bench`: register, discover and echo
# throughput at 1, 16 and 64 connections, on the memory and embedded stores,
# with each workload's ratio to echo. Prints a Markdown table.
# Usage: scripts/bench-table.sh [seconds per run, default 5]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/rendezvous" ./cmd/rendezvous
bin="$work/rendezvous"

echo "| store | conns | register ops/s | discover ops/s | echo ops/s | register/echo | discover/echo |"
echo "|---|---|---|---|---|---|---|"
for st in memory embedded; do
  "$bin" serve --store "$st" --data-dir "$work/data-$st" --listen /ip4/127.0.0.1/tcp/0 --bench-echo \
    --log-level warn >"$work/addr-$st" 2>"$work/log-$st" &
  pid=$!
  for _ in $(seq 100); do [ -s "$work/addr-$st" ] && break; sleep 0.1; done
  point=$(head -1 "$work/addr-$st")
  for c in 1 16 64; do
    declare -A rate=()
    for w in register discover echo; do
      rate[$w]=$("$bin" bench --point "$point" --workload "$w" --conns "$c" --duration "${secs}s" --json --quiet |
        python3 -c 'import json,sys; print(round(json.load(sys.stdin)["ops_per_sec"]))')
    done
    python3 - "$st" "$c" "${rate[register]}" "${rate[discover]}" "${rate[echo]}" <<'PY'
import sys
st, c, r, d, e = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:])
print(f"| {st} | {c} | {r:.0f} | {d:.0f} | {e:.0f} | {r/e:.2f} | {d/e:.2f} |")
PY
  done
  kill -TERM "$pid"; wait "$pid" || true
done
