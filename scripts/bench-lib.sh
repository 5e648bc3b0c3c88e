# Shared by scripts/bench.sh and scripts/lag-cost.sh (sourced, not run).
# Expects ADMIN (the canary's admin address), BIN (the canary binary) and
# WORK (a scratch dir) to be set by the script that sources it.

# metric_sum URL NAME [FILTER] [FORMAT]: sums the series of NAME on the
# /metrics page URL whose labels contain FILTER, printed with FORMAT
# (default %.6f).
metric_sum() {
  curl -s "$1" | awk -v n="$2" -v f="${3:-}" -v fmt="${4:-%.6f}" \
    '$1 ~ "^"n"({|$)" && index($1, f) { s += $2 } END { printf fmt "\n", s }'
}

# cpu_ticks PID: the user plus system CPU clock ticks PID has used so far.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# canary_toml BASE_URL EVENTS_PER_SECOND: the start of a benchmark's canary
# config, on stdout: admin server on $ADMIN, warn logs, no bursts. It ends
# inside [traffic], so more traffic keys may follow it.
canary_toml() {
  cat <<TOML
[server]
listen = "$ADMIN"
[log]
level = "warn"
[target]
base_url = "$1"
[traffic]
events_per_second = $2
burst.duration = "0s"
TOML
}

# start_canary: runs $BIN with $WORK/canary.toml in the background, with the
# reference API's development token, its log appended to $WORK/canary.log.
# Its pid is then in $!.
start_canary() {
  REHAB_CANARY_TOKEN=dev-token "$BIN" run --config "$WORK/canary.toml" 2>>"$WORK/canary.log" &
}
