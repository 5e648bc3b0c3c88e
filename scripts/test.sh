#!/usr/bin/env bash
# The project's test command (the README's): installs what the tests need if it
# is missing, then runs formatting, lints and the whole suite. A test never
# skips because a tool is absent: missing tools are installed here, or the
# script fails loudly.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# prometheus + promtool (Debian 2.42): rules tests and the end-to-end test.
{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || need_apt+=(prometheus)
command -v curl >/dev/null 2>&1 || need_apt+=(curl) # scripts/soak.sh
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium) # tests/oneshot_html.rs
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "test.sh: installing ${need_apt[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "test.sh: installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
# A 2-minute soak of the daemon at 1000 events/s with bursts (issue 5 item 7),
# on the dev build the tests use. The bounds are generous for 2 noisy shared
# cores; the real figure comes from a 30-minute release run
# (`scripts/soak.sh 30`, goal < 1 MB/h, fds flat).
SOAK_PROFILE=${SOAK_PROFILE:-dev} SOAK_MAX_MB_PER_HOUR=${SOAK_MAX_MB_PER_HOUR:-50} \
  SOAK_MAX_FD_GROWTH=${SOAK_MAX_FD_GROWTH:-5} SOAK_INTERVAL=${SOAK_INTERVAL:-5} scripts/soak.sh 2
profile=default
[ -n "${CI:-}" ] && profile=ci
cargo nextest run --locked --profile "$profile" "$@"
