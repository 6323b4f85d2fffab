#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain: the
# wasm32-wasip2 target for the guest plugins; from Debian's packages when they
# are missing, util-linux flock(1), coreutils mkfifo, protoc (the etcd
# client's build needs it), and etcd with etcdctl and openssl for the etcd
# tests; componentize-py from PyPI; and componentize-js from npm. With the
# argument `demo`, only what the demo needs.
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

# Python packages, pinned, in the project's own virtual environment:
# componentize-py builds the Python plugin peer (tests/peers/python-plugin), and Python's
# locket and filelock are the programs the interop tests lock against.
venv=.venv
requirements=(componentize-py==0.25.1 locket==1.0.0 filelock==4.3.1)
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
installed=$("$venv/bin/pip" freeze --disable-pip-version-check 2>/dev/null || true)
for requirement in "${requirements[@]}"; do
    if ! grep -qix "$requirement" <<<"$installed"; then
        echo "prepare-tests: installing ${requirements[*]} into $venv" >&2
        "$venv/bin/pip" install --quiet --disable-pip-version-check "${requirements[@]}"
        break
    fi
done

# componentize-js, pinned by guest-js/package-lock.json, installed into the
# project (guest-js/node_modules), never globally: `locket-js build` makes
# the JavaScript plugin peer with it. Node comes from the machine.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "prepare-tests: please install Node.js 20 or later, with npm" >&2
    exit 1
fi
# A copy of the lock file, written after a successful install, says that
# node_modules matches it.
stamp=guest-js/node_modules/.locket-installed-from
if ! cmp -s guest-js/package-lock.json "$stamp"; then
    echo "prepare-tests: installing componentize-js into guest-js/node_modules" >&2
    (cd guest-js && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    cp guest-js/package-lock.json "$stamp"
fi
