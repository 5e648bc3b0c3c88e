#!/usr/bin/env bash
# Benchmarks of the canary's own cost (BENCHMARKS.md), against a static nginx
# target that answers 201 to event POSTs, beside oha and wrk at the same job:
#   (a) 100k requests at 5,000 req/s: CPU seconds and peak RSS, canary vs oha -q 5000
#   (b) unlimited rate: max requests/s, canary vs wrk -t2
#   (c) schedule delay p99 at 5,000 req/s (from the canary's own histogram)
#   (d) the canary against the reference API (sim) at 1,000 events/s
# Usage: scripts/bench.sh [seconds-per-run]   (default 20; (a) uses 100k requests)
# Needs: nginx, wrk, time (apt), oha (cargo install oha). Installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-20}
ROOT=$PWD
WORK=$(mktemp -d /tmp/rehab-bench.XXXXXX)
BIN=$ROOT/target/release/rehab-canary
ADMIN=127.0.0.1:18742
TARGET=http://127.0.0.1:18080

missing=()
command -v nginx >/dev/null || missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
[ -x /usr/bin/time ] || missing+=(time)
if [ ${#missing[@]} -gt 0 ]; then apt-get update -qq && apt-get install -y -qq "${missing[@]}"; fi
command -v oha >/dev/null || cargo install --locked oha
cargo build --release --quiet

cleanup() {
  for f in "$WORK/nginx.pid" "$WORK/sim.pid"; do
    [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null
  done
  pkill -f "$WORK/" 2>/dev/null || true
}
trap cleanup EXIT
nginx -c "$ROOT/bench/nginx.conf" -p "$WORK/" &
sleep 1
curl -sf -XPOST "$TARGET/api/v1/events" >/dev/null || { echo "nginx not answering"; exit 1; }

# shellcheck source=scripts/bench-lib.sh
. "$ROOT/scripts/bench-lib.sh"
calc() { awk "BEGIN { printf \"%.2f\", $* }"; }
# quantile Q: from the schedule-delay histogram (upper bucket bound reached).
delay_quantile() {
  curl -s "http://$ADMIN/metrics" | awk -v q="$1" '
    /^rehab_canary_schedule_delay_seconds_bucket/ { match($0, /le="[^"]+"/); le = substr($0, RSTART+4, RLENGTH-5); b[++n] = le; c[n] = $2 }
    END { total = c[n]; for (i = 1; i <= n; i++) if (c[i] >= q * total) { print b[i]; exit } }'
}

# The canary's traffic connections, as many as oha's and wrk's (-c 32).
export REHAB_CANARY__TARGET__CONNECTIONS=32
canary_config() { # base_url rate max_in_flight probes_enabled
  {
    canary_toml "$1" "$2"
    cat <<EOF
max_events_per_second = 1000000
max_in_flight = $3
[traffic.mix]
patient = 1
therapist = 0
admin = 0
# The probes poll read models nginx cannot serve; (d) turns them back on.
[lag.probes.stream]
enabled = $4
[lag.probes.adherence]
enabled = $4
[lag.probes.quality]
enabled = $4
[lag.probes.work_queue]
enabled = $4
EOF
  } > "$WORK/canary.toml"
}

# run_canary SECONDS: runs the canary, prints "cpu_s peak_rss_kb requests p50 p99"
# (CPU and peak RSS read from /proc just before SIGTERM).
run_canary() {
  start_canary
  local pid=$!
  sleep "$1"
  local sent p50 p99 ticks hwm
  sent=$(metric_sum "http://$ADMIN/metrics" rehab_canary_requests_total)
  p50=$(delay_quantile 0.50)
  p99=$(delay_quantile 0.99)
  ticks=$(cpu_ticks "$pid")
  hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
  kill -TERM "$pid"
  wait "$pid" || true
  echo "$(calc "$ticks / $(getconf CLK_TCK)") $hwm $sent $p50 $p99"
}

echo "== (a) 100k requests at 5000 req/s"
canary_config "$TARGET" 5000 256 false
read -r cpu rss sent p50 p99 < <(run_canary 20.5)
echo "canary: cpu ${cpu}s for ${sent} requests -> $(calc "$cpu * 100000 / $sent") cpu-s/100k, peak RSS $((rss / 1024)) MiB"
echo "canary: schedule delay p50 <= ${p50}s, p99 <= ${p99}s (histogram bucket bounds)"
echo '{"kind":"rep_observation","subject_id":"canary-p000001","body":{"session_id":"s","rep_number":3,"quality_score":0.81},"meta":{"synthetic":true}}' > "$WORK/body.json"
/usr/bin/time -f "%U %S %M" -o "$WORK/oha.time" oha -q 5000 -n 100000 -c 32 --no-tui -m POST \
  -H 'content-type: application/json' -H 'authorization: Bearer dev-token' -D "$WORK/body.json" \
  "$TARGET/api/v1/events" > "$WORK/oha.out"
read -r u s m < "$WORK/oha.time"
echo "oha -q 5000: cpu $(calc "$u + $s")s for 100000 requests, peak RSS $((m / 1024)) MiB"

echo "== (b) unlimited rate for ${SECS}s"
canary_config "$TARGET" 1000000 256 false
read -r cpu rss sent p50 p99 < <(run_canary "$SECS")
echo "canary: $(calc "$sent / $SECS") req/s (32 connections)"
wrk -t2 -c32 -d"${SECS}s" -s "$ROOT/bench/post.lua" "$TARGET/api/v1/events" | grep -E "Requests/sec"

echo "== (d) against the reference API at 1000 events/s for ${SECS}s"
"$BIN" sim --listen 127.0.0.1:18081 > "$WORK/sim.log" 2>&1 &
echo $! > "$WORK/sim.pid"
sleep 1
canary_config "http://127.0.0.1:18081" 1000 256 true
sed -i 's/^patient = 1$/patient = 70/; s/^therapist = 0$/therapist = 20/; s/^admin = 0$/admin = 10/' "$WORK/canary.toml"
read -r cpu rss sent p50 p99 < <(run_canary "$SECS")
echo "canary vs sim: ${sent} requests in ${SECS}s, cpu ${cpu}s, peak RSS $((rss / 1024)) MiB, schedule delay p99 <= ${p99}s"
curl -s http://127.0.0.1:18081/metrics | grep -E '^rehab_sim_events_accepted_total' || true
