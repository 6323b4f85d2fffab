#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain: util-linux
# flock(1) and coreutils mkfifo, from Debian's packages, when they are missing.
# The wasm32-wasip2 target comes from rust-toolchain.toml on the first cargo call.
set -euo pipefail

missing=()
command -v flock >/dev/null 2>&1 || missing+=(util-linux)
command -v mkfifo >/dev/null 2>&1 || missing+=(coreutils)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "prepare-tests: please install ${missing[*]} (the tests need flock(1) and mkfifo)" >&2
        exit 1
    fi
    echo "prepare-tests: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
