#!/usr/bin/env bash
# Installs locket as a user outside this repository would, from the package
# files alone, and runs what it installed:
#   1. scripts/dist.sh --crates: the crates (`cargo package --workspace`,
#      verified), the Python wheel and the npm tarball, into target/dist;
#   2. in a scratch directory that refers to nothing of this checkout but
#      copies of those files and of the three plugin sources in
#      scripts/check-install/: `cargo install --locked` of locket-host and
#      locket-cmd from the unpacked crates (a `[patch.crates-io]` stands in
#      for the registry); a fresh `cargo new` plugin that depends on
#      locket-guest; a fresh venv with `pip install` of the wheel, then
#      `locket-py build`; a fresh npm project with `npm install` of the
#      tarball, then `npx locket-js build`;
#   3. each plugin under the installed locket-host while util-linux flock(1)
#      holds its lock file: it must print `timeout` (timeout 0), and then
#      `acquired` only after flock(1) has let go. The order of the lines in
#      one log is checked, never a time.
# The release build of `cargo install` goes to $LOCKET_INSTALL_CACHE (default
# ~/.cache/locket-check-install) so that a rerun is quick. Needs what
# scripts/prepare-tests.sh installs (the wasm32-wasip2 target, protoc,
# flock(1), Node and npm).
# `--allow-dirty` packages uncommitted changes too (for a try before a commit).
set -euo pipefail
cd "$(dirname "$0")/.."
dist_args=(--crates)
case "${1:-}" in
    "") ;;
    --allow-dirty) dist_args+=(--allow-dirty) ;;
    *) echo "usage: scripts/check-install.sh [--allow-dirty]" >&2; exit 2 ;;
esac
started=$SECONDS
cache=${LOCKET_INSTALL_CACHE:-$HOME/.cache/locket-check-install}
step() { printf 'check-install: [%4ds] %s\n' $((SECONDS - started)) "$*"; }
fail() { echo "check-install: FAILED: $*" >&2; exit 1; }
# Runs `COMMAND... --version`, shows its line, and fails unless it starts
# with NAME and the release version.
says_version() {
    local name=$1 line
    shift
    line=$("$@" --version) || fail "$name --version failed"
    echo "$line"
    [[ $line == "$name $version" || $line == "$name $version "* ]] ||
        fail "$name --version does not say $version: $line"
}

step "packaging the crates (verified), the wheel and the npm tarball"
# The package files, as dist.sh lists them; the crates are every .crate.
mapfile -t files < <(scripts/dist.sh "${dist_args[@]}")
[ ${#files[@]} -gt 0 ] || fail "scripts/dist.sh made no package files"
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' guest-python/locket_guest/__init__.py)
crates=()
for file in "${files[@]}"; do
    name=$(basename "$file")
    [[ $name == *-"$version".crate ]] && crates+=("${name%-"$version".crate}")
done

# The toolchain this checkout pins (and prepare-tests.sh gave the wasm
# target), since the scratch directory has no rust-toolchain.toml.
RUSTUP_TOOLCHAIN=$(sed -n 's/^channel = "\(.*\)"$/\1/p' rust-toolchain.toml)
export RUSTUP_TOOLCHAIN

scratch=$(mktemp -d "${TMPDIR:-/tmp}/locket-check-install.XXXXXX")
holder=
plugin_pid=
cleanup() {
    # Nothing started here may outlive the script, on success or failure:
    # the holder runs in a process group of its own (flock(1) and its sh).
    if [ -n "$holder" ]; then kill -- "-$holder" 2>/dev/null || true; fi
    if [ -n "$plugin_pid" ]; then kill "$plugin_pid" 2>/dev/null || true; fi
    rm -rf "$scratch"
}
trap cleanup EXIT
mkdir -p "$scratch/dist" "$scratch/sources"
cp "${files[@]}" "$scratch/dist/"
cp scripts/check-install/main.rs scripts/check-install/app.py scripts/check-install/app.js "$scratch/sources/"
(cd "$scratch/dist" && for f in *; do printf 'check-install: %9d bytes  %s\n' "$(wc -c <"$f")" "$f"; done)
# Nothing below reads the checkout.
cd "$scratch"

mkdir crates
for crate in "${crates[@]}"; do
    tar -xzf "dist/$crate-$version.crate" -C crates
done
# Where the registry would serve our crates, the unpacked packages do.
mkdir .cargo
{
    echo '[patch.crates-io]'
    for crate in "${crates[@]}"; do
        echo "$crate = { path = \"$scratch/crates/$crate-$version\" }"
    done
} >.cargo/config.toml

step "cargo install --locked locket-host and locket-cmd into a fresh root"
for crate in locket-host locket-cmd; do
    cargo install --quiet --locked --root "$scratch/root" \
        --target-dir "$cache/target" --path "crates/$crate-$version"
done
export PATH=$scratch/root/bin:$PATH
for command in locket-host locket; do
    [ "$(command -v "$command")" = "$scratch/root/bin/$command" ] || fail "$command is not the installed one"
    says_version "$command" "$command"
done

step "a fresh cargo project: a Rust plugin that depends on locket-guest"
cargo new --quiet --vcs none --bin rust-plugin
echo "locket-guest = \"$version\"" >>rust-plugin/Cargo.toml
cp sources/main.rs rust-plugin/src/main.rs
(cd rust-plugin && cargo build --quiet --release --target wasm32-wasip2 --target-dir "$cache/plugin-target")
cp "$cache/plugin-target/wasm32-wasip2/release/rust-plugin.wasm" rust.wasm

step "a fresh venv: pip install the wheel, then locket-py build"
python3 -m venv venv
venv/bin/pip install --quiet --disable-pip-version-check "dist/locket_guest-$version-py3-none-any.whl"
says_version locket-py venv/bin/locket-py
cp sources/app.py app.py
venv/bin/locket-py build app.py -o python.wasm

step "a fresh npm project: npm install the tarball, then npx locket-js build"
mkdir js-plugin
(
    cd js-plugin
    npm init --yes >/dev/null
    npm install --no-audit --no-fund --loglevel=error "../dist/locket-guest-$version.tgz" >/dev/null
    says_version locket-js npx --no-install locket-js
    cp ../sources/app.js app.js
    npx --no-install locket-js build app.js -o ../js.wasm
)

# Runs PLUGIN under the installed locket-host while flock(1) holds the lock
# file, and checks the order of the lines in their shared log. While
# flock(1) holds it, the installed `locket lock -w 0` must find it held too.
check_plugin() {
    local language=$1 plugin=$2
    local shared=$scratch/shared-$language log=$scratch/$language.log
    mkdir "$shared"
    : >"$log"
    mkfifo "$shared/held" "$shared/go"
    # Opened both ways, a FIFO opens at once: nothing here can hang on an
    # open whose other side never comes.
    exec 3<>"$shared/held"
    # flock(1), in a process group of its own, opens its way to be told to
    # go, says that it holds the lock, waits, and writes its last line
    # while it still holds the lock.
    setsid flock "$shared/app.lock" sh -c '
        exec 4<>"$1/go"
        echo held >&3
        read -r _ <&4
        echo "flock(1): releasing" >>"$2"' sh "$shared" "$log" &
    holder=$!
    read -r -t 600 _ <&3 || fail "$language: flock(1) did not take the lock"
    exec 3<&-
    local status=0
    locket lock -w 0 "$shared/app.lock" -- true 2>/dev/null || status=$?
    [ "$status" = 1 ] || fail "locket lock -w 0 exited $status, not 1, while flock(1) held the lock"
    locket-host run --dir "$shared::/data" "$plugin" /data/app.lock >>"$log" 2>"$log.stderr" &
    plugin_pid=$!
    # The plugin's first line, within a generous bound.
    local tries=0
    until [ -s "$log" ]; do
        tries=$((tries + 1))
        [ $tries -le 1200 ] || fail "$language: no line from the plugin in 600 s"
        kill -0 "$plugin_pid" 2>/dev/null || break
        sleep 0.5
    done
    echo go 1<>"$shared/go"
    wait "$holder" || fail "$language: flock(1) failed"
    holder=
    wait "$plugin_pid" || fail "$language: the plugin failed: $(cat "$log" "$log.stderr")"
    plugin_pid=
    sed "s/^/check-install: $language: /" "$log"
    [ "$(cat "$log")" = "$(printf 'timeout\nflock(1): releasing\nacquired')" ] ||
        fail "$language: the lines are not timeout, flock(1): releasing, acquired in that order"
}

step "each plugin against flock(1) under the installed locket-host"
check_plugin rust "$scratch/rust.wasm"
check_plugin python "$scratch/python.wasm"
check_plugin javascript "$scratch/js.wasm"
step "the installed locket-host ran a Rust, a Python and a JavaScript plugin"
echo "check-install: took $((SECONDS - started)) s"
echo "check-install: 3 passed, 0 failed"
