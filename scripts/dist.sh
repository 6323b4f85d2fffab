#!/usr/bin/env bash
# Builds the package files users install, into target/dist/:
#   locket_guest-VERSION-py3-none-any.whl   the Python distribution (guest-python/)
#   locket-guest-VERSION.tgz                the npm package (guest-js/)
# and, with --crates (and --allow-dirty, to try uncommitted changes), the
# crates: `cargo package` with verification, of every publishable crate of
# the workspace, in dependency order, as NAME-VERSION.crate.
# It prints their paths. A file whose bytes did not change is left as it was
# (the builds are reproducible), so that its time says when its contents
# last changed; package files of other versions or names are removed.
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
# One run at a time per checkout: guest-js's prepack adds and removes
# guest-js/wit, which a second run would race.
exec 9>"$out/.lock"
flock 9
# The work folder is beside the results, so that moving one in is a rename.
work=$(mktemp -d "$PWD/$out/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The workspace as cargo describes it, read once; `metadata CODE` runs
# Python on it (as `m`).
workspace=$(cargo metadata --no-deps --format-version 1 --locked)
metadata() {
    python3 -c "import json, sys; m = json.load(sys.stdin); $1" <<<"$workspace"
}
version=$(metadata 'print(m["packages"][0]["version"])')
wheel=locket_guest-$version-py3-none-any.whl
tarball=locket-guest-$version.tgz

# The wheel, built by the backend pyproject.toml pins, installed once into a
# build environment of its own (so that a rerun needs no network).
backend=$(sed -n 's/^requires = \["\(.*\)"\]$/\1/p' guest-python/pyproject.toml)
builder=target/dist-build-venv
if ! grep -qix "$backend" <("$builder/bin/python" -m pip freeze 2>/dev/null); then
    rm -rf "$builder"
    python3 -m venv "$builder"
    "$builder/bin/python" -m pip install --quiet --disable-pip-version-check "$backend" >&2
fi
mkdir "$work/new"
"$builder/bin/python" -m pip wheel --quiet --disable-pip-version-check --no-deps \
    --no-build-isolation -w "$work/new" ./guest-python >&2

# The npm tarball; guest-js's prepack copies the WIT and the license in.
(cd guest-js && npm pack --silent --pack-destination "$work/new" >/dev/null)

expected=("$wheel" "$tarball")
if $crates; then
    # cargo 1.95 does not skip `publish = false` members of --workspace.
    publishable=$(metadata 'print(*(p["name"] for p in m["packages"] if p["publish"] != []))')
    excluded=$(metadata 'print(*("--exclude " + p["name"] for p in m["packages"] if p["publish"] == []))')
    # shellcheck disable=SC2086
    cargo package --workspace $excluded --locked "${dirty[@]}" >&2
    target=$(metadata 'print(m["target_directory"])')
    for name in $publishable; do
        cp "$target/package/$name-$version.crate" "$work/new/"
        expected+=("$name-$version.crate")
    done
fi

for file in "$work"/new/*; do
    if ! cmp -s "$file" "$out/$(basename "$file")"; then
        mv "$file" "$out/"
    fi
done
# What an earlier run made under another version or name goes.
for file in "$out"/*.whl "$out"/*.tgz "$out"/*.crate; do
    [ -e "$file" ] || continue
    name=$(basename "$file")
    keep=false
    for wanted in "${expected[@]}"; do
        [ "$name" = "$wanted" ] && keep=true
    done
    # Without --crates, the crates of this version stay.
    if ! $keep && ! $crates && [[ $name == *-"$version".crate ]]; then
        keep=true
    fi
    $keep || rm -f "$file"
done
# The package files, one path a line.
for name in "${expected[@]}"; do
    echo "$PWD/$out/$name"
done
