#!/usr/bin/env bash
# Runs the benchmark harness and regenerates bench/RESULTS.md.
# Arguments go to locket-bench (for example --rounds 100).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/prepare-tests.sh
cargo build --release --locked -q -p locket-host -p locket-bench
cargo build --release --locked -q -p locket-host --example serve
exec cargo run --release --locked -q -p locket-bench -- \
    --out bench/RESULTS.md --plot bench/handoff-cdf.svg "$@"
