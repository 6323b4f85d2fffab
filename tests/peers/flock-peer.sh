#!/bin/sh
# The flock(1) peer: util-linux flock(1) driven by the line protocol of
# tests/peers/README.md. Usage: flock-peer.sh PATH
#
# It prints `ready`, then answers `acquire [MS]` and `acquire-shared [MS]`
# with `acquired` or `error: timeout: ...`, `release` with `released`, and
# `exit [CODE]` by exiting. The shell holds the lock file open on descriptor
# 9 (read-write, never truncated), and flock(1) locks that descriptor, so the
# lock stays with this shell between commands.
set -eu
exec 9<>"$1"
echo ready
while read -r command arg; do
    mode=-x
    case "$command" in
    acquire | acquire-shared)
        [ "$command" = acquire-shared ] && mode=-s
        if [ -z "${arg:-}" ]; then
            flock "$mode" 9
            echo acquired
        elif [ "$arg" = 0 ]; then
            if flock "$mode" -n 9; then echo acquired; else echo "error: timeout: it is held elsewhere"; fi
        else
            seconds=$(awk "BEGIN { printf \"%.3f\", $arg / 1000 }")
            if flock "$mode" -w "$seconds" 9; then echo acquired; else echo "error: timeout: it is held elsewhere"; fi
        fi
        ;;
    release)
        flock -u 9
        echo released
        ;;
    exit) exit "${arg:-0}" ;;
    *) echo "error: unknown-command: $command" ;;
    esac
done
