#!/usr/bin/env bash
# The release daemon against a reference API whose reads answer with a JSON
# body that never ends (`huge_body_rate = 1`, `huge_body_bytes = 0`), for N
# minutes, then healed for one: prints the daemon's peak RSS while the target
# misbehaves, the bodies cut, and whether reads answer 200 again after.
# Usage: scripts/hostile-body.sh [MINUTES]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-5}
BIN=target/release/rehab-canary
WORK=$(mktemp -d /tmp/rehab-hostile.XXXXXX)
SIM=127.0.0.1:18091
ADMIN=127.0.0.1:18792
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
cargo build --release --quiet
printf '[faults]\nhuge_body_rate = 1.0\nhuge_body_bytes = 0\n' > "$WORK/sim.toml"
"$BIN" sim --listen "$SIM" --config "$WORK/sim.toml" > "$WORK/sim.log" 2>&1 &
pids+=($!)
cat > "$WORK/canary.toml" <<TOML
[server]
listen = "$ADMIN"
[log]
level = "warn"
[target]
base_url = "http://$SIM"
[traffic]
events_per_second = 20
[traffic.mix]
patient = 20
therapist = 60
admin = 20
TOML
sleep 1
REHAB_CANARY_TOKEN=dev-token "$BIN" run --config "$WORK/canary.toml" 2> "$WORK/canary.log" &
pid=$!
pids+=("$pid")
sleep 2
peak=0
end=$((SECONDS + ${MINUTES%.*} * 60))
while [ $SECONDS -lt $end ]; do
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
  [ "$rss" -gt "$peak" ] && peak=$rss
  sleep 1
done
sum() { curl -s "http://$ADMIN/metrics" | awk -v f="$1" '/^rehab_canary_requests_total/ && index($0, f) { s += $2 } END { print s + 0 }'; }
cut=$(sum 'status="body_too_large"')
echo "hostile: ${MINUTES} min of endless read bodies: peak RSS $((peak / 1024)) MiB, bodies cut $cut"
curl -s -X DELETE "http://$SIM/sim/faults" > /dev/null
before=$(sum 'status="200"')
sleep 60
after=$(sum 'status="200"')
echo "hostile: healed: $((after - before)) reads answered 200 in the next 60 s"
