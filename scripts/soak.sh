#!/usr/bin/env bash
# Soak test: the release daemon at 1000 events/s with bursts against the
# reference API (`rehab-canary sim`), both on loopback, for N minutes. Samples
# the daemon's RSS (VmRSS) and open fds every SOAK_INTERVAL seconds and prints
# the growth per hour, fitted by least squares over the samples after the
# warm-up, when allocator arenas, connection pools and HDR windows have reached
# their working size. The warm-up is the first 20 % of the run, and never less
# than one whole burst period plus a burst: the first burst opens the extra
# keep-alive connections (and their buffers) that later bursts reuse, so a
# warm-up without one would report that step as a leak.
#
# Usage: scripts/soak.sh [MINUTES]            (default 30; decimals allowed)
# Bounds (exit 1 when exceeded, so CI can run a short version):
#   SOAK_MAX_MB_PER_HOUR   RSS growth after warm-up, MB/h, judged on the smaller
#                          of the two halves' slopes (a leak grows in both; a
#                          one-off step shows in one) (unset: report only)
#   SOAK_MAX_FD_GROWTH     fd growth from the first half of the samples after
#                          warm-up to the second (unset: report only): the
#                          smaller of the peak growth and the floor growth.
#                          The traffic's connections are fixed
#                          (target.connections); the other paths' keep-alive
#                          pool may still swell a little with the probes; a
#                          leak raises both peaks and floors.
# Knobs: SOAK_RATE (1000), SOAK_INTERVAL (10 s), SOAK_BURST_EVERY (30 s),
#   SOAK_BURST_DURATION (5 s), SOAK_BURST_MULTIPLIER (2), SOAK_WARMUP (seconds,
#   overrides the rule above), SOAK_LOG (daemon log level, "warn"),
#   SOAK_SAMPLES (write the samples as TSV to this file).
# Only loopback addresses are used; every process it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

MINUTES=${1:-30}
RATE=${SOAK_RATE:-1000}
INTERVAL=${SOAK_INTERVAL:-10}
BURST_EVERY=${SOAK_BURST_EVERY:-30}
BURST_DURATION=${SOAK_BURST_DURATION:-5}
BURST_MULTIPLIER=${SOAK_BURST_MULTIPLIER:-2}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
# `release` for real figures; CI uses `dev` to reuse the test build.
PROFILE=${SOAK_PROFILE:-release}
if [ "$PROFILE" = dev ]; then BIN=$TARGET_DIR/debug/rehab-canary; else BIN=$TARGET_DIR/$PROFILE/rehab-canary; fi

WORK=$(mktemp -d /tmp/rehab-soak.XXXXXX)
SIM_PID=""
DAEMON_PID=""
cleanup() {
  # Only the two processes this script started, by pid.
  for pid in $DAEMON_PID $SIM_PID; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in $DAEMON_PID $SIM_PID; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "soak: building ($PROFILE)"
cargo build --profile "$PROFILE" --locked --quiet --bin rehab-canary

# A free loopback port: bind port 0 and read what the kernel chose (python3),
# else a random high port that nothing answers on (bash's /dev/tcp).
free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
    return
  fi
  local port
  while :; do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
}
SIM_PORT=$(free_port)
ADMIN_PORT=$(free_port)
while [ "$ADMIN_PORT" = "$SIM_PORT" ]; do ADMIN_PORT=$(free_port); done
SIM=http://127.0.0.1:$SIM_PORT
ADMIN=http://127.0.0.1:$ADMIN_PORT

# Wait up to 20 s for URL to answer 2xx.
wait_up() {
  for _ in $(seq 1 200); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "soak: $1 did not come up" >&2
  return 1
}

"$BIN" sim --listen "127.0.0.1:$SIM_PORT" >"$WORK/sim.log" 2>&1 &
SIM_PID=$!
wait_up "$SIM/health" || { cat "$WORK/sim.log" >&2; exit 1; }

printf 'dev-token\n' >"$WORK/token"
cat >"$WORK/canary.toml" <<EOF
[server]
listen = "127.0.0.1:$ADMIN_PORT"
[log]
level = "${SOAK_LOG:-warn}"
[target]
base_url = "$SIM"
[auth]
token_file = "$WORK/token"
[traffic]
events_per_second = $RATE
max_in_flight = 512
[traffic.burst]
every = "${BURST_EVERY}s"
duration = "${BURST_DURATION}s"
multiplier = $BURST_MULTIPLIER
EOF
"$BIN" run --config "$WORK/canary.toml" >"$WORK/daemon.log" 2>&1 &
DAEMON_PID=$!
wait_up "$ADMIN/-/ready" || { cat "$WORK/daemon.log" >&2; exit 1; }

# Sum of one metric family's series on the daemon's /metrics.
metric() {
  curl -sf "$ADMIN/metrics" | awk -v n="$1" '$1 ~ "^"n"({|$)" { s += $2 } END { printf "%.0f\n", s }'
}

TOTAL=$(awk -v m="$MINUTES" 'BEGIN { printf "%d", m * 60 }')
WARMUP=${SOAK_WARMUP:-$(awk -v t="$TOTAL" -v e="$BURST_EVERY" -v d="$BURST_DURATION" -v i="$INTERVAL" \
  'BEGIN { w = t * 0.2; m = e + d + i; printf "%d", (w > m ? w : m) }')}
echo "soak: ${MINUTES} min at ${RATE} events/s, bursts ${BURST_MULTIPLIER}x for ${BURST_DURATION}s every ${BURST_EVERY}s, warm-up ${WARMUP}s; daemon pid $DAEMON_PID, sim pid $SIM_PID"
printf 'elapsed_s\trss_kb\tfds\tevents_sent\n' >"$WORK/samples.tsv"
START=$(date +%s)
while :; do
  NOW=$(date +%s)
  ELAPSED=$((NOW - START))
  if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
    echo "soak: the daemon exited" >&2
    tail -20 "$WORK/daemon.log" >&2
    exit 1
  fi
  RSS=$(awk '/^VmRSS:/ { print $2 }' "/proc/$DAEMON_PID/status")
  FDS=$(find "/proc/$DAEMON_PID/fd" -mindepth 1 -maxdepth 1 | wc -l)
  SENT=$(metric rehab_canary_events_sent_total)
  printf '%s\t%s\t%s\t%s\n' "$ELAPSED" "$RSS" "$FDS" "$SENT" | tee -a "$WORK/samples.tsv"
  [ "$ELAPSED" -ge "$TOTAL" ] && break
  sleep "$INTERVAL"
done
[ -n "${SOAK_SAMPLES:-}" ] && cp "$WORK/samples.tsv" "$SOAK_SAMPLES"

# Least-squares slope of RSS over the samples after the warm-up, in MB/h
# (1 MB = 1e6 bytes), plus the fd range over the same samples.
awk -F'\t' -v warmup="$WARMUP" -v max_mb="${SOAK_MAX_MB_PER_HOUR:-}" -v max_fd="${SOAK_MAX_FD_GROWTH:-}" '
  # Least-squares RSS slope over samples a..b, in MB/h.
  function fit(a, b,   i, k, st, sr, stt, str, d) {
    for (i = a; i <= b; i++) { k++; st += t[i]; sr += r[i]; stt += t[i] * t[i]; str += t[i] * r[i] }
    d = k * stt - st * st
    return d > 0 ? (k * str - st * sr) / d * 3600 / 1e6 : 0
  }
  NR > 1 { n++; t[n] = $1; r[n] = $2 * 1024; f[n] = $3; e[n] = $4 }
  END {
    for (w = 1; w < n && t[w] < warmup; w++) {}
    if (n - w + 1 < 6) { print "soak: too few samples after the warm-up of " warmup " s"; exit 1 }
    half = w + int((n - w + 1) / 2)
    mbh = fit(w, n)
    # A leak grows in both halves; a one-off step (one burst overlapping
    # more requests raises the allocator high-water mark for good) lies in
    # one. The bound judges the smaller of the two halves slopes.
    h1 = fit(w, half - 1); h2 = fit(half, n)
    judged = h1 < h2 ? h1 : h2
    fmin = f[w]; fmax = f[w]; p1 = 0; p2 = 0; l1 = -1; l2 = -1
    for (i = w; i <= n; i++) {
      if (f[i] < fmin) fmin = f[i]; if (f[i] > fmax) fmax = f[i]
      if (i < half) { if (f[i] > p1) p1 = f[i]; if (l1 < 0 || f[i] < l1) l1 = f[i] }
      else { if (f[i] > p2) p2 = f[i]; if (l2 < 0 || f[i] < l2) l2 = f[i] }
    }
    pgrowth = p2 - p1; lgrowth = l2 - l1
    fgrowth = (pgrowth < lgrowth) ? pgrowth : lgrowth
    rate = (e[n] - e[w]) / (t[n] - t[w])
    printf "soak: %d samples, warm-up %d s excluded\n", n, t[w]
    printf "soak: RSS %.1f MB at end of warm-up, %.1f MB at end\n", r[w] / 1e6, r[n] / 1e6
    printf "soak: RSS growth after warm-up %.2f MB/h (halves %.2f, %.2f)\n", mbh, h1, h2
    printf "soak: fds after warm-up min %d max %d; peak growth %d (halves %d, %d), floor growth %d (halves %d, %d)\n", fmin, fmax, pgrowth, p1, p2, lgrowth, l1, l2
    printf "soak: achieved %.0f events/s after warm-up\n", rate
    bad = 0
    if (max_mb != "" && judged > max_mb + 0) { printf "soak: FAIL RSS growth %.2f MB/h in both halves, over the bound %s MB/h\n", judged, max_mb; bad = 1 }
    if (max_fd != "" && fgrowth > max_fd + 0) { printf "soak: FAIL fd growth (peaks and floors) %d over the bound %s\n", fgrowth, max_fd; bad = 1 }
    if (!bad && (max_mb != "" || max_fd != "")) print "soak: within bounds"
    exit bad
  }' "$WORK/samples.tsv"
