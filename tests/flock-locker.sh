#!/bin/sh
# A test helper that drives util-linux flock(1) from lines on stdin, speaking
# the same protocol as locket-helper: it prints `ready`, then answers
# `acquire [MS]` with `acquired` or `error: timeout`, and `release` with
# `released`. The shell holds the lock file open on descriptor 9 (read-write,
# never truncated), and flock(1) locks that descriptor, so the lock stays with
# this shell between commands.
set -eu
exec 9<>"$1"
echo ready
while read -r command ms; do
    case "$command" in
    acquire)
        if [ -z "${ms:-}" ]; then
            flock 9
            echo acquired
        elif [ "$ms" = 0 ]; then
            if flock -n 9; then echo acquired; else echo "error: timeout"; fi
        else
            seconds=$(awk "BEGIN { printf \"%.3f\", $ms / 1000 }")
            if flock -w "$seconds" 9; then echo acquired; else echo "error: timeout"; fi
        fi
        ;;
    release)
        flock -u 9
        echo released
        ;;
    exit) exit 0 ;;
    *) echo "error: unknown command $command" ;;
    esac
done
