"""A script that shows what a plugin built by `locket-py build` gets from
CPython's conventions: `sys.argv`, stdin and stdout, `sys.exit(n)`, and an
uncaught exception's traceback and exit code 1.

    python script.py CODE [WORDS...]   exits with CODE after echoing stdin
    python script.py raise             an uncaught exception
    python script.py message           sys.exit("message"): printed, exit 1
    python script.py none|true|false|huge   sys.exit(None), (True), (False), (2**70)
"""

import sys


def main():
    print("argv " + " ".join(sys.argv[1:]))
    what = sys.argv[1]
    if what == "raise":
        raise ValueError("raised on purpose")
    if what == "message":
        sys.exit("a message for stderr")
    if what in ("none", "true", "false", "huge"):
        sys.exit({"none": None, "true": True, "false": False, "huge": 2**70}[what])
    for line in sys.stdin:
        print("echo " + line.strip().upper())
    sys.exit(int(what))


if __name__ == "__main__":
    main()
