"""The plugin peer in Python, written with the Python SDK (``import locket``,
locket.py's API) and built by ``locket-py build``.

It speaks the line protocol of tests/peers/README.md as the Rust
``locker.wasm`` does: it prints ``ready``, then answers each line. Handle 0
is a lock on the path given as the first argument; a line may start with
``#N`` to act on handle N.

    acquire [MS] | acquire-shared [MS]   acquired, or error: KIND: MESSAGE
    release                              released, or an error
    is-locked                            true or false
    token                                token N, or token none
    open PATH                            opened N (a new handle N)
    drop                                 dropped
    handoff [MS]                         waiting, then at NS once acquired (released right after)
    increment DATA N                     incremented N: N rounds of acquire, add one to DATA, release
    bench N [MS]                         bench NS: the mean ns of N acquire+release cycles, less an empty loop
    exit [CODE]                          exits with CODE (sys.exit)
    raise                                an uncaught exception (exit 1, with its traceback)
    alloc                                allocates memory, a MiB at a time, forever (a trap under --max-memory)

Build:  locket-py build tests/peers/python-plugin/locker.py -o locker-py.wasm
Run:    locket-host run --dir .::/data locker-py.wasm /data/x.lock
"""

import sys
import time

import locket

KINDS = [
    (locket.Timeout, "timeout"),
    (locket.NotLocked, "not-locked"),
    (locket.Deadlock, "deadlock"),
    (locket.AccessDenied, "access-denied"),
    (locket.InvalidPath, "invalid-path"),
    (locket.TooManyLocks, "limit"),
    (locket.LockIOError, "io"),
]


def error_line(error):
    for cls, kind in KINDS:
        if isinstance(error, cls):
            return "error: {0}: {1}".format(kind, error)
    return "error: unknown: {0}".format(error)


def seconds(words):
    """``[MS]`` as a timeout in seconds, or None."""
    return int(words[0]) / 1000 if words else None


def increment(lock, data, n):
    for _ in range(n):
        with lock:
            try:
                with open(data) as f:
                    value = int(f.read().strip() or 0)
            except FileNotFoundError:
                value = 0
            with open(data, "w") as f:
                f.write("{0}\n".format(value + 1))
    return "incremented {0}".format(n)


def bench(lock, n, timeout):
    started = time.perf_counter_ns()
    for _ in range(n):
        lock.acquire(timeout=timeout)
        lock.release()
    spent = time.perf_counter_ns() - started
    started = time.perf_counter_ns()
    for _ in range(n):
        pass
    empty = time.perf_counter_ns() - started
    return "bench {0}".format(max(spent - empty, 0) / max(n, 1))


def answer(handles, words):
    handle = 0
    if words[0].startswith("#"):
        handle, words = int(words[0][1:]), words[1:]
    command, rest = words[0], words[1:]
    if command == "open":
        path = rest[0] if rest else ""
        handles.append(locket.lock_file(path))
        return "opened {0}".format(len(handles) - 1)
    if command == "exit":
        sys.exit(int(rest[0]) if rest else 0)
    if command == "raise":
        raise RuntimeError("raise requested")
    if command == "alloc":
        kept = []
        while True:
            kept.append(bytearray(1 << 20))
    if handle >= len(handles) or handles[handle] is None:
        return "error: no handle #{0}".format(handle)
    lock = handles[handle]
    if command == "acquire":
        lock.acquire(timeout=seconds(rest))
        return "acquired"
    if command == "acquire-shared":
        lock.acquire_shared(timeout=seconds(rest))
        return "acquired"
    if command == "release":
        lock.release()
        return "released"
    if command == "is-locked":
        return "true" if lock.is_locked() else "false"
    if command == "token":
        token = lock.token()
        return "token none" if token is None else "token {0}".format(token)
    if command == "drop":
        handles[handle] = None
        return "dropped"
    if command == "handoff":
        print("waiting", flush=True)
        lock.acquire(timeout=seconds(rest))
        at = time.time_ns()
        lock.release()
        return "at {0}".format(at)
    if command == "increment":
        return increment(lock, rest[0], int(rest[1]))
    if command == "bench":
        return bench(lock, int(rest[0]), seconds(rest[1:]))
    return "error: unknown-command: {0!r}".format(command)


def main():
    handles = []
    if len(sys.argv) > 1:
        try:
            handles.append(locket.lock_file(sys.argv[1]))
        except locket.LockError as error:
            print(error_line(error), flush=True)
            sys.exit(1)
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        try:
            reply = answer(handles, words)
        except locket.LockError as error:
            reply = error_line(error)
        print(reply, flush=True)


if __name__ == "__main__":
    main()
