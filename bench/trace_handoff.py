"""Where a hand-off's time goes, from kernel tracepoints.

Run by bench/trace-handoff.sh, which records the `drive` step under
`perf record` and then runs `analyze` on `perf script` output.

    trace_handoff.py drive ROUNDS OUT_DIR   # the hand-offs (under perf)
    trace_handoff.py analyze OUT_DIR        # Markdown breakdown to stdout

`drive` holds a lock file with flock(2), lets one waiter at a time block on
it, releases it, and reads back the wall-clock time at which the waiter says
it got the lock; it cycles through the waiter kinds round by round, as
locket-bench does. `analyze` splits each hand-off at the kernel events of the
waiter's thread: the holder's LOCK_UN, the waiter's wake-up (sched_waking),
the moment it runs again (sched_switch), the return of its flock(2), and its
own clock read, with the system calls, page faults and switches in between.
"""

import collections
import fcntl
import os
import platform
import re
import statistics
import subprocess
import sys
import time

KINDS = ["flock", "locket", "locket-timeout", "guest", "guest-timeout"]
NAMES = {
    "flock": "raw blocking `flock`",
    "locket": "`locket`, no timeout",
    "locket-timeout": "`locket`, timeout 60 s",
    "guest": "guest, no timeout",
    "guest-timeout": "guest, timeout 60 s",
}
# x86_64 system call numbers of the calls a waiter makes after waking.
SYSCALLS = {0: "read", 1: "write", 3: "close", 73: "flock", 202: "futex",
            226: "timer_delete", 262: "newfstatat", 332: "statx"}
FLOCK = 73
LOCK_UN = 8


def drive(rounds, out):
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    data = os.path.join(out, "data")
    os.makedirs(data, exist_ok=True)
    path = os.path.join(data, "handoff.lock")
    env = dict(os.environ, LOCKET_CACHE_DIR=os.path.join(out, "cache"))
    waiters = {}
    for kind in KINDS:
        if kind.startswith("guest"):
            cmd = [f"{target}/release/locket-host", "run", f"--dir={data}::/data",
                   f"{target}/wasm-guests/wasm32-wasip2/release/locker.wasm",
                   "/data/handoff.lock"]
        else:
            raw = ["--raw"] if kind == "flock" else []
            cmd = [f"{target}/release/locket-peer", *raw, path]
        child = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True, bufsize=1, env=env)
        line = child.stdout.readline().strip()
        if line != "ready":
            sys.exit(f"{kind} said {line!r}")
        waiters[kind] = child
    with open(os.path.join(out, "clock"), "w") as clock:
        clock.write(f"{wall_minus_monotonic()}\n")
    go = {"locket-timeout": "handoff 60000", "guest-timeout": "handoff 60000"}
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    with open(os.path.join(out, "pids"), "w") as pids:
        for kind, child in waiters.items():
            pids.write(f"{kind} {child.pid}\n")
        pids.write(f"holder {os.getpid()}\n")
    with open(os.path.join(out, "handoffs"), "w") as log:
        for _ in range(rounds):
            for kind, child in waiters.items():
                fcntl.flock(fd, fcntl.LOCK_EX)
                child.stdin.write(go.get(kind, "handoff") + "\n")
                child.stdin.flush()
                line = child.stdout.readline().strip()
                if line != "waiting":
                    sys.exit(f"{kind} said {line!r}")
                time.sleep(0.002)  # let it block in the kernel
                fcntl.flock(fd, fcntl.LOCK_UN)
                acquired = child.stdout.readline().split()[-1]
                if not acquired.isdigit():
                    sys.exit(f"{kind} said {acquired!r} instead of a time")
                log.write(f"{kind} {acquired}\n")
    for child in waiters.values():
        child.stdin.close()
        child.wait()


def is_unlock(rest):
    """Whether a sys_enter's text is flock(fd, LOCK_UN)."""
    m = re.match(rf"NR {FLOCK} \((\w+), (\w+),", rest)
    return bool(m) and int(m.group(2), 16) == LOCK_UN


def check_machine():
    if platform.machine() != "x86_64":
        sys.exit("trace_handoff.py knows x86_64 system call numbers only")


def wall_minus_monotonic():
    """CLOCK_REALTIME minus CLOCK_MONOTONIC in ns, from the tightest of many
    back-to-back reads. perf records on CLOCK_MONOTONIC (`-k monotonic`), and
    the two clocks differ only when the wall clock is stepped."""
    best = None
    for _ in range(1000):
        before = time.monotonic_ns()
        wall = time.time_ns()
        after = time.monotonic_ns()
        if best is None or after - before < best[0]:
            best = (after - before, wall - (before + after) // 2)
    return best[1]


EVENT = re.compile(r"^\s*.*?\s+(\d+)/(\d+)\s+\[(\d+)\]\s+(\d+)\.(\d+):\s+(\S+):\s*(.*)$")


def analyze(out):
    pids = dict(line.split() for line in open(os.path.join(out, "pids")))
    holder = int(pids.pop("holder"))
    kind_of = {int(pid): kind for kind, pid in pids.items()}
    handoffs = [line.split() for line in open(os.path.join(out, "handoffs"))]
    offset = int(open(os.path.join(out, "clock")).read())
    if abs(wall_minus_monotonic() - offset) > 1000:
        sys.exit("the wall clock was stepped since the trace; rerun it")
    events, process_of = [], {}
    for line in open(os.path.join(out, "script.txt")):
        m = EVENT.match(line)
        if not m:
            continue
        pid, tid, cpu, sec, frac, name, rest = m.groups()
        pid, tid = int(pid), int(tid)
        process_of[tid] = pid
        # perf prints seconds and nanoseconds (--ns); keep microseconds.
        at = int(sec) * 1e6 + int(frac.ljust(9, "0")) / 1e3
        events.append((at, pid, tid, int(cpu), name, rest))
    events.sort(key=lambda e: e[0])
    releases = [i for i, (_, pid, _, _, name, rest) in enumerate(events)
                if pid == holder and name == "raw_syscalls:sys_enter" and is_unlock(rest)]
    if len(releases) != len(handoffs):
        sys.exit(f"perf saw {len(releases)} releases by the holder, but it made {len(handoffs)}: "
                 "events were lost; rerun with fewer rounds")
    parts = collections.defaultdict(lambda: collections.defaultdict(list))
    calls_seen = collections.defaultdict(collections.Counter)
    skipped = collections.Counter()
    capped = collections.Counter()
    for i, (kind, acquired) in zip(releases, handoffs):
        t0 = events[i][0]
        # The waiter's wall-clock read, on perf's (monotonic) clock.
        t_acquired = (int(acquired) - offset) / 1e3
        if t_acquired < t0:
            sys.exit(f"a {kind} waiter acquired before the release: the clocks do not line up")
        waiter = woken = running = returned = None
        calls, pending = [], None
        faults = switched_out = 0
        j = i + 1
        while j < len(events) and events[j][0] <= t_acquired:
            at, epid, etid, _, ename, erest = events[j]
            j += 1
            if waiter is None:
                # sched_waking is recorded in the waker's context: the holder's.
                if epid == holder and ename == "sched:sched_waking":
                    tid = int(re.search(r" pid=(\d+)", erest).group(1))
                    if kind_of.get(process_of.get(tid)) == kind:
                        waiter, woken = tid, at
            elif running is None:
                if ename == "sched:sched_switch" and f"next_pid={waiter} " in erest:
                    running = at
            elif etid != waiter:
                continue
            elif returned is None:
                if ename == "raw_syscalls:sys_exit" and erest.startswith(f"NR {FLOCK} "):
                    returned = at
            elif ename == "raw_syscalls:sys_enter" and is_unlock(erest):
                # Its release, which comes after its clock read: reaching it
                # first means the clock alignment is off.
                t_acquired = at
                capped[kind] += 1
                break
            elif ename == "exceptions:page_fault_user":
                faults += 1
            elif ename == "sched:sched_switch":
                switched_out += 1  # recorded by the thread switched out
            elif ename == "raw_syscalls:sys_enter":
                pending = (int(erest.split()[1]), at)
            elif ename == "raw_syscalls:sys_exit" and pending:
                nr, start = pending
                pending = None
                calls.append((nr, at - start))
        if returned is None:
            skipped[kind] += 1  # an event is missing: leave this hand-off out
            continue
        p = parts[kind]
        p["release → waiter woken"].append(woken - t0)
        p["woken → running"].append(running - woken)
        p["running → its flock returns"].append(returned - running)
        p["flock returns → acquired (clock read)"].append(t_acquired - returned)
        p["of which system calls"].append(sum(d for _, d in calls))
        p["of which user space"].append(t_acquired - returned - sum(d for _, d in calls))
        p["total"].append(t_acquired - t0)
        p["page faults after flock returns (mean)"].append(faults)
        p["switched out after flock returns (mean)"].append(switched_out)
        calls_seen[kind][" + ".join(SYSCALLS.get(nr, f"nr {nr}") for nr, _ in calls) or "none"] += 1
    kinds = [k for k in KINDS if k in parts]
    print("# Where a hand-off's time goes\n")
    print("Regenerate with `bench/trace-handoff.sh` (root, perf). Each hand-off is split at kernel "
          "tracepoints (sched_waking, sched_switch, raw_syscalls, page faults) recorded by "
          "`perf record -a -k monotonic`: from the holder's LOCK_UN, to the waiter's wake-up, to "
          "when it runs, to the return of its flock, to its own wall-clock read, which is placed on "
          "perf's clock by the offset between the wall clock and the monotonic clock. Tracing "
          "makes every system call and switch slower, so the totals are above bench/RESULTS.md's; "
          "compare the columns with each other. System calls, page faults and switches are the "
          "waiter thread's.\n")
    print("Median µs per segment, over the hand-offs per kind shown here (left out for a missing "
          "event; clock read placed after the waiter's own release, and moved back to it): "
          + ", ".join(f"{k} {len(parts[k]['total'])} ({skipped[k]}; {capped[k]})" for k in kinds)
          + ".\n")
    print("| segment | " + " | ".join(NAMES[k] for k in kinds) + " |")
    print("|---|" + "---:|" * len(kinds))
    for segment in parts[kinds[0]]:
        average = statistics.mean if segment.endswith("(mean)") else statistics.median
        print(f"| {segment} | " + " | ".join(
            f"{average(parts[k][segment]):.1f}" for k in kinds) + " |")
    print("\nSystem calls between the waiter's flock returning and its clock read (most common):\n")
    for k in kinds:
        seq, n = calls_seen[k].most_common(1)[0]
        print(f"- {NAMES[k]}: {seq} ({n} of {len(parts[k]['total'])})")
    print()


if __name__ == "__main__":
    check_machine()
    if len(sys.argv) == 4 and sys.argv[1] == "drive":
        drive(int(sys.argv[2]), sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "analyze":
        analyze(sys.argv[2])
    else:
        sys.exit(__doc__)
