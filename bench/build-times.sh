#!/usr/bin/env bash
# Times the first build as a new user meets it, in fresh clones of this
# repository at REV (default HEAD), each with its own target directory:
#   1. `./demo.sh` from cold, then the build of `./test.sh` right after it
#      in the same clone (`cargo test --workspace --no-run`, as test.sh runs
#      it, after the same `scripts/prepare-tests.sh`);
#   2. the build of `./test.sh` from cold, in a second fresh clone.
# Prints one line per figure and adds a row for REV to bench/BUILD-TIMES.md.
# The clones go to a scratch directory that is removed at the end. Run
# nothing else meanwhile: builds share the cores.
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:-HEAD}
repo=$PWD
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
seconds() { local s=$SECONDS; "$@" >>"$scratch/log" 2>&1 || { tail -30 "$scratch/log" >&2; return 1; }; echo $((SECONDS - s)); }
clone() {
    git clone -q "$repo" "$scratch/$1"
    git -C "$scratch/$1" checkout -q "$rev"
}
commit=$(git rev-parse --short "$rev")
clone demo
demo=$(cd "$scratch/demo" && seconds ./demo.sh)
(cd "$scratch/demo" && scripts/prepare-tests.sh >>"$scratch/log" 2>&1)
after_demo=$(cd "$scratch/demo" && seconds cargo test --workspace --locked --no-run)
demo_target=$(du -sm "$scratch/demo/target" | cut -f1)
rm -rf "$scratch/demo"
clone cold
(cd "$scratch/cold" && scripts/prepare-tests.sh >>"$scratch/log" 2>&1)
cold=$(cd "$scratch/cold" && seconds cargo test --workspace --locked --no-run)
cold_target=$(du -sm "$scratch/cold/target" | cut -f1)
echo "build-times $commit: ./demo.sh from cold: ${demo} s (target ${demo_target} MB after it and the test build)"
echo "build-times $commit: ./test.sh's build right after ./demo.sh: ${after_demo} s"
echo "build-times $commit: ./test.sh's build from cold: ${cold} s (target ${cold_target} MB)"
awk -v a="$after_demo" -v c="$cold" 'BEGIN { printf "build-times '"$commit"': after-demo / cold test build: %.2f\n", a / c }'
table=bench/BUILD-TIMES.md
if [ ! -f "$table" ]; then
    cat >"$table" <<'HEADER'
# First build

Regenerate a row with `bench/build-times.sh REV`, on an otherwise idle machine: fresh clones, each with its own target directory, sharing only cargo's download cache. "After ./demo.sh" is `cargo test --workspace --no-run` (the build of ./test.sh) in the clone where ./demo.sh just ran; "cold" is the same in a second fresh clone.

| commit | `./demo.sh` from cold, s | test build after it, s | test build from cold, s | after / cold | target dir, MB |
|---|---:|---:|---:|---:|---:|
HEADER
fi
ratio=$(awk -v a="$after_demo" -v c="$cold" 'BEGIN { printf "%.2f", a / c }')
echo "| $commit ($(git log -1 --format=%cs "$rev")) | $demo | $after_demo | $cold | $ratio | $demo_target |" >>"$table"
