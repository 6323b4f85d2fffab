#!/usr/bin/env bash
# Builds the package files users install, into target/dist/:
#   locket_guest-VERSION-py3-none-any.whl   the Python distribution (guest-python/)
#   locket-guest-VERSION.tgz                the npm package (guest-js/)
# and, with --crates (and --allow-dirty, to try uncommitted changes), the crates (`cargo package` with verification, every
# publishable crate of the workspace, in dependency order):
#   locket-file, locket-etcd, locket-cmd, locket-host, locket-guest -VERSION.crate
# It prints their paths. A file whose bytes did not change is left as it was (the builds are
# reproducible), so that its time says when its contents last changed.
set -euo pipefail
cd "$(dirname "$0")/.."
crates=false
dirty=()
for arg in "$@"; do
    case $arg in
        --crates) crates=true ;;
        # For a try before committing: cargo package refuses uncommitted changes.
        --allow-dirty) dirty=(--allow-dirty) ;;
        *) echo "usage: scripts/dist.sh [--crates [--allow-dirty]]" >&2; exit 2 ;;
    esac
done
out=target/dist
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Moves each file of $work/new into $out unless $out has the same bytes.
keep_new() {
    for file in "$work"/new/*; do
        if ! cmp -s "$file" "$out/$(basename "$file")"; then
            mv "$file" "$out/"
        fi
    done
    rm -rf "$work/new"
}

# The wheel, with the backend pyproject.toml pins (pip fetches it).
mkdir -p "$work/new"
python3 -m pip wheel --quiet --disable-pip-version-check --no-deps \
    -w "$work/new" ./guest-python >&2
keep_new

# The npm tarball; guest-js's prepack copies the WIT and the license in.
mkdir -p "$work/new"
(cd guest-js && npm pack --silent --pack-destination "$work/new" >/dev/null)
keep_new

if $crates; then
    # cargo 1.95 does not skip `publish = false` members of --workspace.
    excluded=$(cargo metadata --no-deps --format-version 1 --locked | python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    if p["publish"] == []:
        print("--exclude", p["name"])')
    # shellcheck disable=SC2086
    cargo package --workspace $excluded --locked "${dirty[@]}" >&2
    mkdir -p "$work/new"
    version=$(cargo metadata --no-deps --format-version 1 --locked | python3 -c '
import json, sys
print(json.load(sys.stdin)["packages"][0]["version"])')
    target=$(cargo metadata --no-deps --format-version 1 --locked | python3 -c '
import json, sys
print(json.load(sys.stdin)["target_directory"])')
    cp "$target"/package/*-"$version".crate "$work/new/"
    keep_new
fi
# The package files, one path a line.
ls -d "$PWD/$out"/*
