"""A test helper that drives Python's locket or py-filelock from lines on stdin.

Usage: pylocker.py (locket|filelock) PATH

It prints `ready`, then answers each line, like the Rust `locket-helper`:
`acquire [MS]` -> `acquired` or `error: timeout`; `release` -> `released` or
`error: not-locked`; `exit` ends it. `increment DATA N` takes the lock N times
and adds 1 to the number in DATA under it each time, then says `done`.
"""

import sys


def make(kind, path):
    if kind == "locket":
        import locket

        def acquire(timeout):
            lock = locket.lock_file(path, timeout=timeout)
            lock.acquire()
            return lock.release

        busy = (locket.LockError,)
    elif kind == "filelock":
        import filelock

        lock = filelock.UnixFileLock(path)

        def acquire(timeout):
            lock.acquire(timeout=-1 if timeout is None else timeout)
            return lock.release

        busy = (filelock.Timeout,)
    else:
        raise SystemExit(f"unknown kind {kind!r}")
    return acquire, busy


def increment(acquire, data, n):
    for _ in range(n):
        release = acquire(None)
        try:
            with open(data) as f:
                value = int(f.read().strip() or 0)
            with open(data, "w") as f:
                f.write(f"{value + 1}\n")
        finally:
            release()


def main():
    kind, path = sys.argv[1], sys.argv[2]
    acquire, busy = make(kind, path)
    release = None
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        command, rest = words[0], words[1:]
        if command == "acquire":
            timeout = int(rest[0]) / 1000 if rest else None
            try:
                release = acquire(timeout)
                answer = "acquired"
            except busy:
                answer = "error: timeout"
        elif command == "release":
            if release is None:
                answer = "error: not-locked"
            else:
                release()
                release = None
                answer = "released"
        elif command == "increment":
            increment(acquire, rest[0], int(rest[1]))
            answer = "done"
        elif command == "exit":
            return
        else:
            answer = f"error: unknown command {command!r}"
        print(answer, flush=True)


if __name__ == "__main__":
    main()
