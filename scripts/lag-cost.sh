#!/usr/bin/env bash
# What the lag probes cost (BENCHMARKS.md, "Lag probe cost"): reads per probe
# event and the canary's CPU, with every probe at 1 event/s and at 20
# events/s, against the reference API (release build, its own process) with
# a 0 ms and a 30 ms response path. No load traffic: every request is a
# probe's. Reads are counted by the simulator (rehab_sim_requests_total of
# the read routes), so any canary binary can be compared.
# Usage: scripts/lag-cost.sh [seconds-per-run]   (default 30)
#   CANARY_BIN=/path/to/rehab-canary  measures another build (default: this
#   tree's release build); the simulator is always this tree's.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-30}
ROOT=$PWD
WORK=$(mktemp -d /tmp/rehab-lagcost.XXXXXX)
cargo build --release --quiet
SIM_BIN=$ROOT/target/release/rehab-canary
BIN=${CANARY_BIN:-$SIM_BIN}
ADMIN=127.0.0.1:18752
SIM=127.0.0.1:18091

cleanup() {
  [ -f "$WORK/sim.pid" ] && kill "$(cat "$WORK/sim.pid")" 2>/dev/null
  [ -f "$WORK/canary.pid" ] && kill "$(cat "$WORK/canary.pid")" 2>/dev/null
  true
}
trap cleanup EXIT

"$SIM_BIN" sim --listen "$SIM" > "$WORK/sim.log" 2>&1 &
echo $! > "$WORK/sim.pid"
for _ in $(seq 50); do curl -sf "http://$SIM/health" >/dev/null && break; sleep 0.1; done

# shellcheck source=scripts/bench-lib.sh
. "$ROOT/scripts/bench-lib.sh"
# sum NAME FILTER URL: sums the series of NAME whose labels contain FILTER.
sum() { metric_sum "$3" "$1" "$2" "%.0f"; }
reads() {
  local t=0
  for r in patient_stream adherence quality work_queue; do
    t=$((t + $(sum rehab_sim_requests_total "route=\"$r\"" "http://$SIM/metrics")))
  done
  echo "$t"
}

printf "%-8s %-9s %8s %8s %10s %10s %12s\n" "rate" "response" "probes" "reads" "reads/evt" "cpu_s" "cpu_ms/evt"
for delay in 0 30; do
  curl -sf -XPUT "http://$SIM/sim/faults" -d "{\"response_delay_ms\": $delay}" >/dev/null
  for interval in 1s 50ms; do
    {
      canary_toml "http://$SIM" 0
      cat <<EOF
[lag]
interval = "$interval"
[lag.probes.work_queue]
interval = "$interval"
EOF
    } > "$WORK/canary.toml"
    start_canary
    pid=$!
    echo $pid > "$WORK/canary.pid"
    for _ in $(seq 50); do curl -sf "http://$ADMIN/-/ready" >/dev/null && break; sleep 0.1; done
    sleep 3 # warm-up: connections, first probes
    p0=$(sum rehab_canary_lag_probes_total "" "http://$ADMIN/metrics")
    r0=$(reads)
    c0=$(cpu_ticks $pid)
    sleep "$SECS"
    p1=$(sum rehab_canary_lag_probes_total "" "http://$ADMIN/metrics")
    r1=$(reads)
    c1=$(cpu_ticks $pid)
    kill $pid
    wait $pid 2>/dev/null || true
    hz=$(getconf CLK_TCK)
    awk -v p=$((p1 - p0)) -v r=$((r1 - r0)) -v c=$((c1 - c0)) -v hz="$hz" -v iv="$interval" -v d="${delay}ms" \
      'BEGIN { rate = (iv == "1s") ? "1/s" : "20/s";
               printf "%-8s %-9s %8d %8d %10.1f %10.2f %12.2f\n", rate, d, p, r, r / p, c / hz, 1000 * c / hz / p }'
  done
done
