#!/usr/bin/env bash
# The main job: sandboxed plugins under locket-host and native processes share
# one counter file under one lock, without losing an update.
# Arguments: [WORKERS] [INCREMENTS] (default 2 of each kind, 500 increments).
set -euo pipefail
cd "$(dirname "$0")"
scripts/prepare-tests.sh demo
# The test profile's build (optimised dependencies), so tests and demo share it.
# The demo itself is demo/src/main.rs.
cargo build --locked -q -p locket-host -p locket-demo
exec cargo run --locked -q -p locket-demo -- "$@"
