"""Adds 1 to the number in DATA, N times, each time under the lock file
LOCK, using Python's locket as its README shows. It is a plain script for
CPython with locket.py 1.0.0; the tests also build it, unchanged, into a
plugin with `locket-py build` and run both at once on the same files.

    python counter.py LOCK DATA N
"""

import sys

import locket


def add_one(path):
    try:
        with open(path) as f:
            value = int(f.read().strip() or 0)
    except FileNotFoundError:
        value = 0
    with open(path, "w") as f:
        f.write("{0}\n".format(value + 1))


def main():
    lock_path, data, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    for _ in range(n):
        with locket.lock_file(lock_path, timeout=60):
            add_one(data)
    # Without a context manager, as locket.py's README shows too.
    lock = locket.lock_file(lock_path)
    try:
        lock.acquire()
    finally:
        lock.release()
    print("counted {0}".format(n))


if __name__ == "__main__":
    main()
