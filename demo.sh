#!/usr/bin/env bash
# The main job: sandboxed plugins under locket-host and native processes share
# one counter file under one lock, without losing an update.
# Arguments: [WORKERS] [INCREMENTS] (default 2 of each kind, 500 increments).
set -euo pipefail
cd "$(dirname "$0")"
scripts/prepare-tests.sh demo
# The build `cargo test --workspace` starts from: the test profile's
# (optimised dependencies), with every crate of the workspace, so that its
# dependencies are built with the features the tests need and ./test.sh
# reuses them. (`cargo run -p locket-demo` would resolve features for the
# demo alone and rebuild some of them, hence the binary is run directly.)
# The demo itself is demo/src/main.rs.
cargo build --locked -q --workspace
exec "${CARGO_TARGET_DIR:-target}/debug/locket-demo" "$@"
