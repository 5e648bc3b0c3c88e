#!/usr/bin/env bash
# The project's test command (the README's): installs what the tests need if it
# is missing, then runs formatting, lints and the whole suite. A test never
# skips because a tool is absent: missing tools are installed here, or the
# script fails loudly.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# systemd-analyze (systemd 252): tests/deploy_files.rs verifies the units and
# rates their sandboxing; it reads the host's units, not a running systemd.
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
# yamllint (PyPI, installed below with pip): tests/deploy_files.rs lints
# deploy/compose with --strict. pip comes from apt when missing.
have_yamllint() { command -v yamllint >/dev/null 2>&1 || python3 -m yamllint --version >/dev/null 2>&1; }
if ! have_yamllint && ! python3 -m pip --version >/dev/null 2>&1; then
  need_apt+=(python3-pip)
fi
# prometheus + promtool (Debian 2.42): rules tests and the end-to-end test.
{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || need_apt+=(prometheus)
command -v curl >/dev/null 2>&1 || need_apt+=(curl) # scripts/soak.sh
# One-shot runs: --push-gateway is tested against Debian's Pushgateway, and the
# HTML report is rendered in headless Chromium.
command -v prometheus-pushgateway >/dev/null 2>&1 || need_apt+=(prometheus-pushgateway)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "test.sh: installing ${need_apt[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
# Debian's Python refuses system-wide pip installs (PEP 668), so: a plain
# install, then the user site, then --break-system-packages (pip >= 23).
if ! have_yamllint; then
  echo "test.sh: installing yamllint"
  python3 -m pip install --quiet yamllint \
    || python3 -m pip install --quiet --user yamllint \
    || python3 -m pip install --quiet --user --break-system-packages yamllint
  # A --user install puts the script in ~/.local/bin (the test also falls
  # back to `python3 -m yamllint`).
  export PATH="$PATH:$HOME/.local/bin"
  hash -r
  have_yamllint || { echo "test.sh: yamllint is still missing" >&2; exit 1; }
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "test.sh: installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

# kubernetes-validate (PyPI): tests/deploy_kubernetes.rs validates deploy/kubernetes
# with it. (kubectl, when present, renders the kustomizations; without it that
# test checks every kustomization reference by hand.)
if ! command -v kubernetes-validate >/dev/null 2>&1; then
  echo "test.sh: installing kubernetes-validate"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; pip_user=(); else SUDO="sudo"; pip_user=(--user); fi
  if ! python3 -m pip --version >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-pip
  fi
  # An externally managed Python (PEP 668, Debian's) refuses the plain install.
  python3 -m pip install --quiet "${pip_user[@]}" kubernetes-validate ||
    python3 -m pip install --quiet --break-system-packages "${pip_user[@]}" kubernetes-validate
  export PATH="$PATH:$HOME/.local/bin"
  hash -r
  command -v kubernetes-validate >/dev/null 2>&1 || {
    echo "test.sh: kubernetes-validate is not on PATH after installing it" >&2
    exit 1
  }
fi

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
# Leak checks are deterministic tests in the suite (tests/bounds.rs: open fds
# within the connection bounds across bursts; the lag bookkeeping within its
# window), so they hold on a busy machine. The timed soak is a benchmark:
# `scripts/soak.sh 30` (release build; figures in BENCHMARKS.md).
profile=default
[ -n "${CI:-}" ] && profile=ci
cargo nextest run --locked --profile "$profile" "$@"
