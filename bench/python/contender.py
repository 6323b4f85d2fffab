"""Python contenders for locket's benchmark: locket.py and py-filelock.

Usage: contender.py KIND PATH, where KIND is one of
  py-locket          locket.lock_file(PATH, timeout=None)
  py-locket-timeout  locket.lock_file(PATH, timeout=5)
  py-locket-try      locket.lock_file(PATH, timeout=0)
  filelock           filelock.FileLock(PATH) (waits forever, polling)

It prints "ready", then answers lines on stdin:
  go               "waiting"; then acquires, reads the wall clock, releases,
                   and prints the time of the acquire in ns since the epoch
  bench N          "bench NS": mean ns per uncontended acquire+release of N
  contend DATA MS  "contended N": for MS ms, add one to the number in DATA
                   under the lock, N times
"""

import sys
import time


def make(kind, path):
    if kind == "filelock":
        import filelock

        return filelock.FileLock(path)
    import locket

    timeout = {"py-locket": None, "py-locket-timeout": 5, "py-locket-try": 0}[kind]
    return locket.lock_file(path, timeout=timeout)


def main():
    kind, path = sys.argv[1], sys.argv[2]
    lock = make(kind, path)
    out = sys.stdout
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if words == ["go"]:
            print("waiting", flush=True)
            lock.acquire()
            at = time.time_ns()
            lock.release()
            print(at, flush=True)
        elif len(words) == 2 and words[0] == "bench":
            n = int(words[1])
            start = time.perf_counter_ns()
            for _ in range(n):
                lock.acquire()
                lock.release()
            print("bench", (time.perf_counter_ns() - start) / n, flush=True)
        elif len(words) == 3 and words[0] == "contend":
            data, until = words[1], time.monotonic() + int(words[2]) / 1000
            rounds = 0
            while time.monotonic() < until:
                lock.acquire()
                try:
                    with open(data) as f:
                        value = int(f.read().strip() or 0)
                    with open(data, "w") as f:
                        f.write(str(value + 1))
                finally:
                    lock.release()
                rounds += 1
            print("contended", rounds, flush=True)
        else:
            return
    out.flush()


if __name__ == "__main__":
    main()
