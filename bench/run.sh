#!/usr/bin/env bash
# Runs the benchmark harness and regenerates bench/RESULTS.md.
# Arguments go to locket-bench (for example --rounds 100).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/prepare-tests.sh
# One build for the binaries and the async example, so that they share one set
# of dependency features (two would build wasmtime twice).
cargo build --release --locked -q -p locket-host -p locket-bench --bins --example serve
exec cargo run --release --locked -q -p locket-bench -- \
    --out bench/RESULTS.md --plot bench/handoff-cdf.svg "$@"
