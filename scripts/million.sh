#!/usr/bin/env bash
# A whole point at 10^6 registrations. For each store (memory, embedded) it
# starts `rendezvous serve --bench-echo` on 127.0.0.1 (loopback: no
# per-source quota or rate) with room for PEERS × NAMESPACES registrations
# and a tenth (and 10,000) more, then:
#   1. measures register, discover and echo with `rendezvous bench` on the
#      empty point (10 namespaces bench-0..9, DISCOVER limit 100); unless
#      PAGES=0, 100 peers register in them first, so that its DISCOVERs get
#      full pages of 100 as at the fill;
#   2. fills it over libp2p with internal/fillpoint (PEERS peers, each its own
#      host, REGISTERing in NAMESPACES namespaces fill-0..fill-N-1, 32 at once);
#   3. measures the same again, plus "discover-filled": DISCOVERs (limit 100)
#      of random namespaces fill-0..fill-N-1, each holding PEERS registrations;
#   4. embedded store only: stops serve (SIGTERM), starts it again on the same
#      data directory and port, and times exec to the first answered DISCOVER
#      (`rendezvous discover --ns fill-0 --limit 1` retried, each try bounded
#      by 2 s, all of them by 60 s).
# It prints serve's RSS (VmRSS, and VmHWM the peak) empty, filled and after
# the runs, the load average before each step, and a Markdown table of ops/s
# empty and at the fill with their ratio, also with each over the echo of its
# phase (the machine's other work moves all three workloads alike). serve, the filler and the load
# generator share the machine. Before each step it waits up to QUIET seconds
# (default 60) for a 1-minute load average under MAXLOAD (default 1.5).
#
# With ROUNDS=N, the empty point of step 1 is a second serve of the same
# store, started beside the one that is filled and kept running (idle)
# through the fill; step 3 then measures both points in turn, N rounds of
# each, so that each comparison is of two runs a few seconds apart, and the
# table gives per workload the median of each side and the range of the
# per-round ratios, full over empty.
# Usage: scripts/million.sh [seconds per bench run, default 5] [connections, default "16"]
#   env: STORES (default "memory embedded"), PEERS (1000), NAMESPACES (1000),
#   SERVE_GOMEMLIMIT (GOMEMLIMIT for serve alone, such as 900MiB; default none),
#   ROUNDS (default none: the empty point measured once, before the fill)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
conns=${2:-16}
stores=${STORES:-memory embedded}
peers=${PEERS:-1000}
namespaces=${NAMESPACES:-1000}
total=$((peers * namespaces))
maxload=${MAXLOAD:-1.5}
quietwait=${QUIET:-60}
rounds=${ROUNDS:-}
work=$(mktemp -d)
pid=
emptypid=
stop_serve() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  pid=
}
stop_empty() {
  if [ -n "$emptypid" ]; then kill -TERM "$emptypid" 2>/dev/null || true; wait "$emptypid" 2>/dev/null || true; fi
  emptypid=
}
trap 'stop_serve; stop_empty; rm -rf "$work"' EXIT
go build -o "$work/rendezvous" ./cmd/rendezvous
go build -o "$work/fillpoint" ./internal/fillpoint
bin="$work/rendezvous"

load() { cut -d' ' -f1-3 /proc/loadavg; }
# quiet waits (at most quietwait seconds) for the 1-minute load average to go under maxload.
quiet() {
  for _ in $(seq $((quietwait / 5))); do
    awk -v max="$maxload" '{ exit !($1 < max) }' /proc/loadavg && return 0
    sleep 5
  done
}
# rss prints serve's VmRSS and VmHWM in MB, and VmRSS's anonymous and
# file-backed parts (the embedded store maps its database file).
rss() {
  awk '/^VmRSS/ { r = $2 } /^VmHWM/ { h = $2 } /^RssAnon/ { a = $2 } /^RssFile/ { f = $2 }
    END { printf "VmRSS %.0f MB (anon %.0f, file %.0f), VmHWM %.0f MB", r / 1000, a / 1000, f / 1000, h / 1000 }' "/proc/$pid/status"
}

# start_serve STORE LISTEN [NAME]: starts serve on the data directory NAME
# (default STORE), sets pid and point.
start_serve() {
  local name=${3:-$1}
  : >"$work/addr"
  env ${SERVE_GOMEMLIMIT:+GOMEMLIMIT=$SERVE_GOMEMLIMIT} "$bin" serve --store "$1" --data-dir "$work/data-$name" --listen "$2" --bench-echo --log-level warn \
    --max-registrations $((total + total / 10 + 10000)) --max-registrations-per-peer "$namespaces" \
    --max-namespaces $((namespaces + 1000)) >"$work/addr" 2>>"$work/serve-$name.log" &
  pid=$!
}
wait_addr() {
  for _ in $(seq 300); do [ -s "$work/addr" ] && break; sleep 0.1; done
  point=$(head -1 "$work/addr")
  [ -n "$point" ] || { echo "serve printed no address:"; cat "$work/serve-$1.log"; exit 1; }
}
# pages registers about 100 peers in each bench namespace, so that DISCOVERs
# get pages of 100 on the "empty" point as at the fill: 100 peers, 5000
# REGISTERs in 10 namespaces at random (each peer misses one with odds
# 0.9^50).
pages() {
  [ "${PAGES:-1}" = 1 ] || return 0
  timeout 300 "$bin" bench --point "$point" --workload register --conns 100 --ops 5000 --duration 240s --quiet >/dev/null
  echo "$st: 100 peers registered in bench-0..9 (pages of up to 100 before the fill too)"
}

# bench_run WORKLOAD CONNS [bench flags...]: prints ops/s; the whole report goes to the raw log.
bench_run() {
  local w=$1 c=$2 out
  shift 2
  out=$(timeout $((secs + 120)) "$bin" bench --point "$point" --workload "$w" --conns "$c" --duration "${secs}s" --json --quiet "$@")
  echo "$out" >>"$work/raw"
  python3 -c 'import json,sys; r = json.loads(sys.argv[1]); print(round(r["ops_per_sec"]) if r["errors"] == 0 else "%d(%d errors: %s)" % (r["ops_per_sec"], r["errors"], r["first_error"]))' "$out"
}

declare -A rate=()
# measure PHASE [ROUND]: register, discover and echo at each connection
# count (each rate appended to those of earlier rounds).
measure() {
  local c w r
  for c in $conns; do
    [ -n "${2:-}" ] || quiet
    echo "$st $1${2:+ round $2}, $c conns: load $(load)"
    for w in register discover discover-filled echo; do
      case $w in
      discover-filled)
        [ "$1" = full ] || continue
        r=$(bench_run discover "$c" --ns-prefix fill- --namespaces "$namespaces") ;;
      *) r=$(bench_run "$w" "$c") ;;
      esac
      rate[$st,$1,$c,$w]="${rate[$st,$1,$c,$w]:+${rate[$st,$1,$c,$w]} }$r"
    done
  done
}

for st in $stores; do
  if [ -n "$rounds" ]; then
    start_serve "$st" /ip4/127.0.0.1/tcp/0 "$st-empty"
    wait_addr "$st-empty"
    emptypid=$pid emptypoint=$point
    echo "$st: empty point $point, kept beside the filled one"
    pages
  fi
  start_serve "$st" /ip4/127.0.0.1/tcp/0
  wait_addr "$st"
  echo "$st: point $point${SERVE_GOMEMLIMIT:+, serve with GOMEMLIMIT=$SERVE_GOMEMLIMIT}"
  echo "$st: serve RSS empty: $(rss)"
  fullpoint=$point
  pages
  [ -n "$rounds" ] || measure empty

  quiet
  echo "$st fill: load $(load); $peers peers × $namespaces namespaces"
  fillstart=$(date +%s)
  timeout 3600 "$work/fillpoint" --point "$point" --peers "$peers" --namespaces "$namespaces" --timeout 59m 2>"$work/fill.log" ||
    { tail -5 "$work/fill.log"; exit 1; }
  echo "$st fill: took $(($(date +%s) - fillstart)) s, load $(load) at its end"
  echo "$st: serve RSS filled: $(rss)"
  if [ -n "$rounds" ]; then
    quiet
    for r in $(seq "$rounds"); do
      point=$emptypoint
      measure empty "$r"
      point=$fullpoint
      measure full "$r"
    done
    stop_empty
  else
    measure full
  fi
  echo "$st: serve RSS after the runs at the fill: $(rss)"

  if [ "$st" = embedded ]; then
    port=$(echo "$point" | sed -E 's|.*/tcp/([0-9]+)/.*|\1|')
    stop_serve
    quiet
    echo "$st restart: load $(load)"
    t0=$(date +%s.%N)
    start_serve "$st" "/ip4/127.0.0.1/tcp/$port"
    answered=
    for _ in $(seq 600); do
      if out=$(timeout 5 "$bin" discover --identity "$work/client.key" --point "$point" --ns fill-0 --limit 1 --timeout 2s 2>/dev/null) &&
        [ -n "$out" ]; then
        answered=$(date +%s.%N)
        break
      fi
      awk -v t0="$t0" -v now="$(date +%s.%N)" 'BEGIN { exit !(now - t0 > 60) }' && break
      sleep 0.05
    done
    [ -n "$answered" ] || { echo "$st restart: no DISCOVER answered within 60 s"; cat "$work/serve-$st.log"; exit 1; }
    python3 -c 'import sys; print(f"{sys.argv[3]} restart: exec to the first answered DISCOVER: {float(sys.argv[2]) - float(sys.argv[1]):.2f} s")' "$t0" "$answered" "$st"
    echo "$st: serve RSS after the restart and one DISCOVER: $(rss)"
    du -sh "$work/data-$st" | sed "s|$work/||; s|^|$st: data directory |"
  fi
  stop_serve
done

echo "end: load $(load)"
echo
if [ -n "$rounds" ]; then
  echo "| store | conns | workload | empty ops/s, median of $rounds | at $total ops/s, median of $rounds | at $total / empty, medians | per round (range) |"
else
  echo "| store | conns | workload | empty ops/s | at $total ops/s | at $total / empty | the same, each over echo of its phase |"
fi
echo "|---|---|---|---|---|---|---|"
for st in $stores; do
  for c in $conns; do
    for w in register discover discover-filled echo; do
      e=${rate[$st,empty,$c,$w]:-${rate[$st,empty,$c,discover]}}
      f=${rate[$st,full,$c,$w]}
      python3 -c 'import statistics, sys
st, c, w, e, f, ee, fe, rounds = sys.argv[1:]
def nums(s): return [float(x) for x in s.split()]
try:
    es, fs = nums(e), nums(f)
except ValueError:
    print(f"| {st} | {c} | {w} | {e} | {f} | ? | ? |"); sys.exit()
em, fm = statistics.median(es), statistics.median(fs)
if rounds:
    rs = [b / a for a, b in zip(es, fs)]
    print(f"| {st} | {c} | {w} | {em:.0f} | {fm:.0f} | {fm / em:.2f} | {min(rs):.2f}–{max(rs):.2f} |")
else:
    try: n = f"{(fm / float(fe)) / (em / float(ee)):.2f}"
    except ValueError: n = "?"
    print(f"| {st} | {c} | {w} | {em:.0f} | {fm:.0f} | {fm / em:.2f} | {n} |")' "$st" "$c" "$w" "$e" "$f" "${rate[$st,empty,$c,echo]}" "${rate[$st,full,$c,echo]}" "$rounds"
    done
  done
done
