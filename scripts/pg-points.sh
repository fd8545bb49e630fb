#!/usr/bin/env bash
# Points on one PostgreSQL database, measured over the wire: REGISTERs a
# second of `rendezvous bench --workload register` against one `serve
# --store postgres://...`, then against two serves on the same schema at
# once (one bench per point, each with the same connections, started
# together; their rates summed). Each run gets a fresh schema. The point,
# the load generators and the database share the machine.
#
# POINT_CPUS=C gives each point C cores of CPU time and no more (a cgroup CPU
# quota of its own, as if each point ran on a machine of its own with C
# cores), so that one point is held by its own CPU rather than by the
# machine's, and two points show what the database lets them add. It needs
# root and the cgroup cpu controller (v1 at /sys/fs/cgroup/cpu or v2).
# Usage: scripts/pg-points.sh [seconds per run, default 5] [connections, default "16 64"]
#   env: DSN (default postgres://postgres@127.0.0.1:5432/test?sslmode=disable),
#   BIN (a prebuilt rendezvous binary; default: built from this tree),
#   POINT_CPUS (cores for each point, e.g. 0.4; default: no quota)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
conns=${2:-16 64}
dsn=${DSN:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
work=$(mktemp -d)
pids=()
schemas=()
groups=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for g in "${groups[@]}"; do rmdir "$g" 2>/dev/null || true; done
  for s in "${schemas[@]}"; do psql -q "$dsn" -c "DROP SCHEMA IF EXISTS $s CASCADE" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT
bin=${BIN:-}
if [ -z "$bin" ]; then
  go build -o "$work/rendezvous" ./cmd/rendezvous
  bin="$work/rendezvous"
fi

# cap PID NAME: puts PID in a new cgroup NAME allowed $POINT_CPUS cores.
cap() {
  [ -n "${POINT_CPUS:-}" ] || return 0
  local quota g
  quota=$(python3 -c "print(round(float('$POINT_CPUS') * 100000))")
  if [ -w /sys/fs/cgroup/cpu/cgroup.procs ]; then
    g=/sys/fs/cgroup/cpu/$2
    mkdir "$g"
    groups+=("$g")
    echo 100000 >"$g/cpu.cfs_period_us"
    echo "$quota" >"$g/cpu.cfs_quota_us"
  elif grep -qw cpu /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
    g=/sys/fs/cgroup/$2
    mkdir "$g"
    groups+=("$g")
    echo "$quota 100000" >"$g/cpu.max"
  else
    echo "POINT_CPUS: no writable cgroup cpu controller here" >&2
    exit 1
  fi
  echo "$1" >"$g/cgroup.procs"
}

# serve_on SCHEMA I: starts point I on SCHEMA (in this shell, so that its
# pid is kept for the cleanup); its address is then in $work/addrI.
serve_on() {
  local sep='&'
  case "$dsn" in *\?*) ;; *) sep='?' ;; esac
  : >"$work/addr$2"
  "$bin" serve --store "$dsn${sep}search_path=$1" --data-dir "$work/data$2" --listen /ip4/127.0.0.1/tcp/0 \
    --log-level warn >"$work/addr$2" 2>>"$work/serve$2.log" &
  pids+=($!)
  cap "$!" "rdv-point-$$-$2"
  for _ in $(seq 300); do [ -s "$work/addr$2" ] && break; sleep 0.1; done
  [ -s "$work/addr$2" ] || { cat "$work/serve$2.log"; exit 1; }
}

# ticks PID...: the CPU clock ticks the processes have used.
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo "$t"; }
# busy: the machine's busy and total clock ticks, all cores.
busy() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8}' /proc/stat; }

# bench_at POINT CONNS OUT: runs the register workload, ops/s into OUT.
bench_at() {
  "$bin" bench --point "$1" --workload register --conns "$2" --duration "${secs}s" --json --quiet |
    python3 -c 'import json,sys; r = json.load(sys.stdin); print(round(r["ops_per_sec"]) if r["errors"] == 0 else "%d(%d errors: %s)" % (r["ops_per_sec"], r["errors"], r["first_error"]))' >"$3"
}

echo "| connections per point | one point | two points | two / one | load | one point: CPU µs per REGISTER, point + database | one point: cores used by the point | machine busy: one point, two points |"
echo "|---|---|---|---|---|---|---|---|"
run=0
for c in $conns; do
  run=$((run + 1))
  schema="rdv_bench_$$_$run"
  schemas+=("$schema")
  psql -q "$dsn" -c "CREATE SCHEMA $schema" >/dev/null
  load=$(cut -d' ' -f1 /proc/loadavg)
  serve_on "$schema" a
  a=$(head -1 "$work/addra")
  db=$(pgrep -x postgres | tr '\n' ' ')
  p0=$(ticks "${pids[0]}"); d0=$(ticks $db); read -r b0 t0 < <(busy)
  bench_at "$a" "$c" "$work/one"
  p1=$(ticks "${pids[0]}"); d1=$(ticks $db); read -r b1 t1 < <(busy)
  serve_on "$schema" b
  b=$(head -1 "$work/addrb")
  read -r b2 t2 < <(busy)
  bench_at "$a" "$c" "$work/twoa" &
  ba=$!
  bench_at "$b" "$c" "$work/twob"
  wait "$ba"
  read -r b3 t3 < <(busy)
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true
  pids=()
  for g in "${groups[@]}"; do rmdir "$g" 2>/dev/null || true; done
  groups=()
  python3 - "$c" "$(cat "$work/one")" "$(cat "$work/twoa")" "$(cat "$work/twob")" "$load" \
    "$((p1 - p0))" "$((d1 - d0))" "$((b1 - b0))" "$((t1 - t0))" "$((b3 - b2))" "$((t3 - t2))" "$(getconf CLK_TCK)" "$secs" <<'PY'
import sys
c, one, a, b, load = sys.argv[1:6]
pt, dt, bt, tt, bt2, tt2, hz, secs = map(float, sys.argv[6:])
try:
    o, t = float(one), float(a) + float(b)
    n = o * secs
    cpu = f"{pt / hz / n * 1e6:.0f} + {dt / hz / n * 1e6:.0f}"
    print(f"| {c} | {o:.0f} | {t:.0f} ({a} + {b}) | {t / o:.2f} | {load} | {cpu} | {pt / hz / secs:.2f} | {bt / tt:.0%}, {bt2 / tt2:.0%} |")
except ValueError:
    print(f"| {c} | {one} | {a} + {b} | – | {load} | – | – | – |")
PY
done
