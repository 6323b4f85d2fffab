"""The Python peer: Python's locket or py-filelock driven by the line protocol
of tests/peers/README.md, for the interop tests and the benchmark.

Usage: python-peer.py (locket|filelock) PATH

It prints `ready`, then answers one command a line on stdin: `acquire [MS]`,
`release`, `exit [CODE]`, and the measurement commands `handoff [MS]`,
`bench N [MS]`, `contend DATA MS` and `increment DATA N`. Neither library
has shared locks.

With locket, each acquire uses `locket.lock_file(PATH, timeout=...)` with the
timeout it asks for (None without MS), so the library's own waiting is
measured: it polls, every 50 ms by default. py-filelock's `FileLock` (its
`UnixFileLock` here) takes the timeout per acquire (-1 waits forever).
"""

import sys
import time


def make(kind, path):
    """lock(timeout) -> (acquire, release) of one reusable lock, and the
    exceptions that mean `timeout`."""
    if kind == "locket":
        import locket

        lockers = {}

        def lock(timeout):
            if timeout not in lockers:
                lockers[timeout] = locket.lock_file(path, timeout=timeout)
            return lockers[timeout].acquire, lockers[timeout].release

        return lock, (locket.LockError,)
    if kind == "filelock":
        import functools

        import filelock

        file_lock = filelock.FileLock(path)

        def lock(timeout):
            if timeout is None:  # its default: wait forever
                return file_lock.acquire, file_lock.release
            return functools.partial(file_lock.acquire, timeout=timeout), file_lock.release

        return lock, (filelock.Timeout,)
    raise SystemExit(f"unknown kind {kind!r}: use locket or filelock")


def add_one(lock, data):
    acquire, release = lock(None)
    acquire()
    try:
        with open(data) as f:
            value = int(f.read().strip() or 0)
        with open(data, "w") as f:
            f.write(f"{value + 1}\n")
    finally:
        release()


def seconds(rest):
    return int(rest[0]) / 1000 if rest else None


def main():
    kind, path = sys.argv[1], sys.argv[2]
    lock, busy = make(kind, path)
    release = None
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        command, rest = words[0], words[1:]
        if command == "acquire" and len(rest) <= 1:
            acquire, held = lock(seconds(rest))
            try:
                acquire()
                release = held
                answer = "acquired"
            except busy:
                answer = "error: timeout: it is held elsewhere"
        elif command == "release" and not rest:
            if release is None:
                answer = "error: not-locked: this peer holds nothing"
            else:
                release()
                release = None
                answer = "released"
        elif command == "handoff" and len(rest) <= 1:
            print("waiting", flush=True)
            acquire, release_it = lock(seconds(rest))
            acquire()
            at = time.time_ns()
            release_it()
            answer = f"at {at}"
        elif command == "bench" and 1 <= len(rest) <= 2:
            n = int(rest[0])
            acquire, release_it = lock(seconds(rest[1:]))
            start = time.perf_counter_ns()
            for _ in range(n):
                acquire()
                release_it()
            answer = f"bench {(time.perf_counter_ns() - start) / n:.1f}"
        elif command == "contend" and len(rest) == 2:
            until = time.monotonic() + int(rest[1]) / 1000
            rounds = 0
            while time.monotonic() < until:
                add_one(lock, rest[0])
                rounds += 1
            answer = f"contended {rounds}"
        elif command == "increment" and len(rest) == 2:
            for _ in range(int(rest[1])):
                add_one(lock, rest[0])
            answer = f"incremented {rest[1]}"
        elif command == "exit":
            raise SystemExit(int(rest[0]) if rest else 0)
        else:
            answer = f"error: unknown-command: {line.strip()!r}"
        print(answer, flush=True)


if __name__ == "__main__":
    main()
