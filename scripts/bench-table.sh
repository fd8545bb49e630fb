#!/usr/bin/env bash
# Measures a point with `rendezvous bench`: register, discover and echo
# throughput at 1, 16 and 64 connections, on the memory and embedded stores,
# with each workload's ratio to echo. Prints a Markdown table.
#
# Each row is ROUNDS rounds (default 3) of register, discover and echo in
# turn, a few seconds apart, so that a change in the machine's speed moves
# the three alike: the table gives each workload's median and the median
# and range of the per-round ratios to echo. The load generator's
# connections are the same peers in every run (bench --peer-seed), so a
# register run refreshes the registrations of the runs before it, and the
# DISCOVERs of a row get pages of as many peers as the row has connections
# (the largest row so far: 1, 16, 64).
# Usage: scripts/bench-table.sh [seconds per run, default 5]
#   env: ROUNDS (default 3), CONNS (default "1 16 64"), STORES (default
#   "memory embedded"), BIN (a rendezvous binary; default: built here),
#   SERVE_ARGS (more flags for serve, such as "--embedded-sync normal")
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
rounds=${ROUNDS:-3}
conns=${CONNS:-1 16 64}
stores=${STORES:-memory embedded}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
bin=${BIN:-$work/rendezvous}
[ -n "${BIN:-}" ] || go build -o "$bin" ./cmd/rendezvous

echo "| store | conns | register ops/s | discover ops/s | echo ops/s | register/echo | discover/echo |"
echo "|---|---|---|---|---|---|---|"
for st in $stores; do
  # shellcheck disable=SC2086 # SERVE_ARGS is a list of flags
  "$bin" serve --store "$st" --data-dir "$work/data-$st" --listen /ip4/127.0.0.1/tcp/0 --bench-echo \
    --log-level warn ${SERVE_ARGS:-} >"$work/addr-$st" 2>"$work/log-$st" &
  pid=$!
  for _ in $(seq 100); do [ -s "$work/addr-$st" ] && break; sleep 0.1; done
  point=$(head -1 "$work/addr-$st")
  for c in $conns; do
    declare -A rate=()
    for _ in $(seq "$rounds"); do
      for w in register discover echo; do
        r=$("$bin" bench --point "$point" --workload "$w" --conns "$c" --duration "${secs}s" --peer-seed 1 --json --quiet |
          python3 -c 'import json,sys; print(round(json.load(sys.stdin)["ops_per_sec"]))')
        rate[$w]="${rate[$w]:-} $r"
      done
    done
    python3 - "$st" "$c" "${rate[register]}" "${rate[discover]}" "${rate[echo]}" <<'PY'
import statistics, sys
st, c = sys.argv[1:3]
reg, disc, echo = ([float(x) for x in a.split()] for a in sys.argv[3:])
def ratio(xs):
    rs = [x / e for x, e in zip(xs, echo)]
    m = f"{statistics.median(rs):.2f}"
    return m if len(rs) == 1 else f"{m} ({min(rs):.2f}–{max(rs):.2f})"
med = statistics.median
print(f"| {st} | {c} | {med(reg):.0f} | {med(disc):.0f} | {med(echo):.0f} | {ratio(reg)} | {ratio(disc)} |")
PY
  done
  kill -TERM "$pid"; wait "$pid" || true
done
