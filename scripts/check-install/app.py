"""The Python plugin of scripts/check-install.sh, a plain locket.py script
built by the installed ``locket-py``: while another process holds the lock
file (argument 1), a try-once acquire prints ``timeout``; then a waiting
acquire prints ``acquired`` once the lock is free."""

import sys

import locket


def main():
    path = sys.argv[1]
    try:
        locket.lock_file(path, timeout=0).acquire()
    except locket.LockError:
        print("timeout", flush=True)
    else:
        print("acquired while held elsewhere", flush=True)
        return 1
    lock = locket.lock_file(path)
    lock.acquire()
    print("acquired", flush=True)
    lock.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
