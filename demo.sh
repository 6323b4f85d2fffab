#!/usr/bin/env bash
# The main job: lockers in separate processes share one counter without losing
# an update. Arguments: [WORKERS] [INCREMENTS] (default 4 and 500).
set -euo pipefail
cd "$(dirname "$0")"
scripts/prepare-tests.sh
exec cargo run --release --locked -q -p locket-tests --bin locket-demo -- "$@"
