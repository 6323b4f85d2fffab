"""The plugin peer in Python, built with componentize-py.

It speaks the line protocol of tests/peers/README.md for one lock (handle 0
on the path given as the first argument), as the Rust `locker.wasm` does:
`acquire [MS]`, `acquire-shared [MS]`, `release`, `is-locked`, answering
`acquired`, `released`, `true`/`false` or `error: KIND`. It prints `ready`
first.

Build:  componentize-py -d wit -w locket:lock/plugin componentize -p tests/peers/python-plugin locker -o locker-py.wasm
Run:    locket-host run --dir .::/data locker-py.wasm /data/x.lock
"""

import sys

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import environment, locket

KINDS = {
    locket.Error_Timeout: "timeout",
    locket.Error_NotLocked: "not-locked",
    locket.Error_Deadlock: "deadlock",
    locket.Error_AccessDenied: "access-denied",
    locket.Error_InvalidPath: "invalid-path",
    locket.Error_Limit: "limit",
    locket.Error_Io: "io",
}


def error_line(err: Err) -> str:
    return "error: " + KINDS.get(type(err.value), "unknown")


def answer(lock: locket.Lock, words: list[str]) -> str:
    command, rest = words[0], words[1:]
    timeout = int(rest[0]) * 1_000_000 if rest else None
    try:
        if command == "acquire":
            lock.acquire(timeout)
            return "acquired"
        if command == "acquire-shared":
            lock.acquire_shared(timeout)
            return "acquired"
        if command == "release":
            lock.release()
            return "released"
        if command == "is-locked":
            return "true" if lock.is_locked() else "false"
        return f"error: unknown-command: {command!r}"
    except Err as err:
        return error_line(err)


class Run(exports.Run):
    def run(self) -> None:
        args = environment.get_arguments()
        try:
            lock = locket.lock_file(args[1])
        except Err as err:
            print(error_line(err), flush=True)
            raise
        print("ready", flush=True)
        for line in sys.stdin:
            words = line.split()
            if words:
                print(answer(lock, words), flush=True)
