#!/usr/bin/env bash
# Fills a `rendezvous serve` (memory store) with 10^6 registrations over
# libp2p (internal/fillpoint: 1000 peers × 1000 namespaces, REGISTERs on
# loopback, trusted by the point: no per-source quota or rate) and times
# full listings of it:
#   rendezvous discover --point P --all --json > /dev/null
# It prints the load average before each step, the fill's time, the point's
# RSS, and each listing's wall time and rate (from discover's own progress
# line on stderr). serve, the filler and the lister share the machine.
# Before the fill and each listing it waits, up to 10 minutes, for a 1-minute
# load average under MAXLOAD (default 1.5), and says what it started at.
# With SERIAL=1, one more listing runs with GOMAXPROCS=1 for the lister: its
# records verified one at a time, as before they were verified in parallel.
# Usage: scripts/list-big-point.sh [listings, default 3] [peers, default 1000] [namespaces, default 1000]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
peers=${2:-1000}
namespaces=${3:-1000}
total=$((peers * namespaces))
work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
go build -o "$work/rendezvous" ./cmd/rendezvous
go build -o "$work/fillpoint" ./internal/fillpoint
bin="$work/rendezvous"

maxload=${MAXLOAD:-1.5}
load() { cut -d' ' -f1-3 /proc/loadavg; }
# quiet waits (at most 10 minutes) for the 1-minute load average to go under maxload.
quiet() {
  for _ in $(seq 120); do
    awk -v max="$maxload" '{ exit !($1 < max) }' /proc/loadavg && return 0
    sleep 5
  done
  echo "(the load stayed above $maxload for 10 minutes)"
}
rss() { grep -E '^(VmRSS|VmHWM)' "/proc/$pid/status" | tr -s ' \t' ' ' | tr '\n' ' '; }

"$bin" serve --store memory --data-dir "$work/data" --listen /ip4/127.0.0.1/tcp/0 --log-level warn \
  --max-registrations $((total + total / 10)) --max-registrations-per-peer "$namespaces" --allow-prefix 127.0.0.0/8 \
  >"$work/addr" 2>"$work/serve.log" &
pid=$!
for _ in $(seq 100); do [ -s "$work/addr" ] && break; sleep 0.1; done
point=$(head -1 "$work/addr")
[ -n "$point" ] || { echo "serve printed no address:"; cat "$work/serve.log"; exit 1; }
echo "point: $point"
echo "serve RSS empty: $(rss)"

quiet
echo "fill: load $(load); $peers peers × $namespaces namespaces"
timeout 1800 "$work/fillpoint" --point "$point" --peers "$peers" --namespaces "$namespaces" --timeout 29m 2>"$work/fill.log" ||
  { tail -5 "$work/fill.log"; exit 1; }
echo "serve RSS after the fill: $(rss)"

listings=$(seq "$runs")
[ "${SERIAL:-0}" = 1 ] && listings="$listings serial"
for i in $listings; do
  quiet
  echo "listing $i: load $(load)"
  procs=$(nproc)
  [ "$i" = serial ] && procs=1
  start=$(date +%s.%N)
  GOMAXPROCS=$procs timeout 900 /usr/bin/time -f 'rendezvous discover: %e s wall, %U s user, %S s sys, %M KiB max RSS' \
    "$bin" discover --identity "$work/lister.key" --point "$point" --all --json >/dev/null 2>"$work/list.log" ||
    { cat "$work/list.log"; exit 1; }
  end=$(date +%s.%N)
  grep -E '^discover: done|^rendezvous discover:' "$work/list.log"
  python3 -c "import sys; n, s = int(sys.argv[1]), float(sys.argv[3]) - float(sys.argv[2]); print(f'listing {sys.argv[4]}: {n} registrations in {s:.2f} s: {n/s:.0f} registrations/s')" \
    "$total" "$start" "$end" "$i"
  # discover prints its totals when it took long enough to report progress.
  if grep -q '^discover: done' "$work/list.log"; then
    grep -q "^discover: done: [0-9]* pages, $total registrations" "$work/list.log" ||
      { echo "listing $i did not list $total registrations"; exit 1; }
  fi
done
echo "serve RSS after the listings: $(rss)"
echo "end: load $(load)"
