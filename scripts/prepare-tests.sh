#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain: the
# wasm32-wasip2 target for the guest plugins; from Debian's packages when they
# are missing, util-linux flock(1), coreutils mkfifo, protoc (the etcd
# client's build needs it), and etcd with etcdctl and openssl for the etcd
# tests; from PyPI, Python's locket and filelock for the interop tests; and
# the guest SDK packages, built from this checkout (scripts/dist.sh) and
# installed as users install them: the wheel into .venv (it brings
# componentize-py), the npm tarball into target/js-env (it brings
# componentize-js). With the argument `demo`, only what the demo needs.
set -euo pipefail
for_demo=false
[ "${1:-}" = demo ] && for_demo=true
cd "$(dirname "$0")/.."

# rust-toolchain.toml lists the target, but rustup only honours that when it
# installs the toolchain itself; a machine that already has the toolchain (even
# as a link to another) still lacks it. Adding it is quick when it is there.
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    echo "prepare-tests: installing the wasm32-wasip2 target" >&2
    rustup target add wasm32-wasip2
fi

missing=()
command -v flock >/dev/null 2>&1 || missing+=(util-linux)
command -v mkfifo >/dev/null 2>&1 || missing+=(coreutils)
# locket-etcd's gRPC code is generated at build time, by protoc.
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
if ! $for_demo; then
    command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
    command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
fi
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "prepare-tests: please install ${missing[*]} (Debian package names)" >&2
        exit 1
    fi
    echo "prepare-tests: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

$for_demo && exit 0

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "prepare-tests: please install Node.js 20 or later, with npm" >&2
    exit 1
fi

# The wheel and the npm tarball, into target/dist (left untouched when their
# contents did not change).
scripts/dist.sh >/dev/null
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' guest-python/locket_guest/__init__.py)
wheel=target/dist/locket_guest-$version-py3-none-any.whl
tarball=target/dist/locket-guest-$version.tgz

# Python packages, pinned, in the project's own virtual environment:
# Python's locket and filelock are the programs the interop tests lock
# against, and the locket-guest wheel gives `locket-py`, which builds the
# Python plugins (it depends on componentize-py 0.25.1).
venv=.venv
requirements=(locket==1.0.0 filelock==4.3.1)
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
installed=$("$venv/bin/pip" freeze --disable-pip-version-check 2>/dev/null || true)
for requirement in "${requirements[@]}"; do
    if ! grep -qix "$requirement" <<<"$installed"; then
        echo "prepare-tests: installing ${requirements[*]} into $venv" >&2
        "$venv/bin/pip" install --quiet --disable-pip-version-check "${requirements[@]}"
        break
    fi
done
# A copy of the wheel, kept after a successful install, says what is installed.
stamp=$venv/.locket-guest-installed-from
if ! cmp -s "$wheel" "$stamp"; then
    echo "prepare-tests: installing $wheel into $venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check --force-reinstall "$wheel"
    cp "$wheel" "$stamp"
fi

# The npm package, installed into a project of its own (target/js-env), as a
# plugin author's project installs it; its npm-shrinkwrap.json pins
# componentize-js and the rest of its tree. Node comes from the machine.
env=target/js-env
stamp=$env/.locket-guest-installed-from
if ! cmp -s "$tarball" "$stamp"; then
    echo "prepare-tests: installing $tarball into $env" >&2
    rm -rf "$env"
    mkdir -p "$env"
    echo '{ "name": "locket-tests-js-env", "private": true }' >"$env/package.json"
    (cd "$env" && npm install --no-audit --no-fund --loglevel=error "../dist/$(basename "$tarball")" >/dev/null)
    cp "$tarball" "$stamp"
fi
