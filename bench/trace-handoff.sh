#!/usr/bin/env bash
# Splits hand-off latency into its kernel and user-space parts with perf
# tracepoints, and writes bench/HANDOFF-TRACE.md. Not part of CI.
#
# It traces the whole system, so it needs root (as a user, `sudo -E` keeps
# cargo on PATH); it installs Debian's linux-perf if perf is missing. An
# optional argument sets the hand-offs per waiter kind (default 300).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-300}
if ! command -v perf >/dev/null 2>&1; then
    echo "trace-handoff: installing linux-perf" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf
fi
scripts/prepare-tests.sh demo
# bench/run.sh's build, so that both share one build of wasmtime. It also
# builds the guest plugins (through locket-tests).
cargo build --release --locked -q -p locket-host -p locket-bench -p locket-tests --bins --example serve
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
perf record -q -a -k monotonic -m 8192 -o "$out/perf.data" \
    -e sched:sched_switch,sched:sched_waking,raw_syscalls:sys_enter,raw_syscalls:sys_exit,exceptions:page_fault_user \
    -- python3 bench/trace_handoff.py drive "$rounds" "$out"
perf script --ns -i "$out/perf.data" -F comm,pid,tid,cpu,time,event,trace >"$out/script.txt" 2>/dev/null
python3 bench/trace_handoff.py analyze "$out" >"$out/HANDOFF-TRACE.md"
mv "$out/HANDOFF-TRACE.md" bench/HANDOFF-TRACE.md
cat bench/HANDOFF-TRACE.md
