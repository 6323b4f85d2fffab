#!/usr/bin/env bash
# Runs the benchmark harness and regenerates bench/RESULTS.md.
# Arguments go to locket-bench (for example --rounds 100).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/prepare-tests.sh
# One build for the binaries (the harness, the host and the native peer
# locket-peer, which the harness starts) and the async example, so that they
# share one set of dependency features (two would build wasmtime twice).
cargo build --release --locked -q -p locket-host -p locket-bench -p locket-tests --bins --example serve
# Run directly: `cargo run -p locket-bench` would resolve features for the
# harness alone and rebuild some crates.
exec "${CARGO_TARGET_DIR:-target}/release/locket-bench" \
    --out bench/RESULTS.md --plot bench/handoff-cdf.svg "$@"
