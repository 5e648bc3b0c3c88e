#!/usr/bin/env bash
# Prints which top-level modules of src/ each one imports (non-test code,
# comments skipped): the graph that tests/architecture.rs keeps acyclic.
# Usage: scripts/import-graph.sh
set -euo pipefail
cd "$(dirname "$0")/../src"
# A module is `name.rs`, `name/`, or both (`client.rs` with `client/tls.rs`).
for module in $(ls | sed 's/\.rs$//' | sort -u); do
  case $module in lib | main) continue ;; esac
  paths=()
  for p in "$module.rs" "$module"; do [ -e "$p" ] && paths+=("$p"); done
  deps=$(find "${paths[@]}" -name '*.rs' -print0 |
    xargs -0 awk '/#\[cfg\(test\)\]/ { nextfile } !/^[[:space:]]*\/\// { print }' |
    grep -o 'crate::[a-z_]*' | sed 's/crate:://' | sort -u | grep -vx "$module" | tr '\n' ' ' || true)
  printf '%-10s -> %s\n' "$module" "$deps"
done
