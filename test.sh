#!/usr/bin/env bash
# Runs the whole test suite: installs what the tests need, then `cargo test`
# over every crate of the workspace. Extra arguments go to `cargo test`.
# It ends with one line that adds up every test binary's results.
set -euo pipefail
cd "$(dirname "$0")"
scripts/prepare-tests.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
