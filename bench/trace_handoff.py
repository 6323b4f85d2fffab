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
            cmd = [f"{target}/release/locket-bench", "contender", kind, path]
        child = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True, bufsize=1, env=env)
        line = child.stdout.readline().strip()
        if line != "ready":
            sys.exit(f"{kind} said {line!r}")
        waiters[kind] = child
    go = {"guest": "handoff", "guest-timeout": "handoff 60000"}
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    with open(os.path.join(out, "pids"), "w") as pids:
        for kind, child in waiters.items():
            pids.write(f"{kind} {child.pid}\n")
        pids.write(f"holder {os.getpid()}\n")
    with open(os.path.join(out, "handoffs"), "w") as log:
        for _ in range(rounds):
            for kind, child in waiters.items():
                fcntl.flock(fd, fcntl.LOCK_EX)
                child.stdin.write(go.get(kind, "go") + "\n")
                child.stdin.flush()
                line = child.stdout.readline().strip()
                if line != "waiting":
                    sys.exit(f"{kind} said {line!r}")
                time.sleep(0.002)  # let it block in the kernel
                released = time.time_ns()
                fcntl.flock(fd, fcntl.LOCK_UN)
                acquired = child.stdout.readline().split()[-1]
                log.write(f"{kind} {released} {acquired}\n")
    for child in waiters.values():
        child.stdin.close()
        child.wait()


EVENT = re.compile(r"^\s*.*?\s+(\d+)/(\d+)\s+\[(\d+)\]\s+(\d+)\.(\d+):\s+(\S+):\s*(.*)$")


def analyze(out):
    pids = dict(line.split() for line in open(os.path.join(out, "pids")))
    holder = int(pids.pop("holder"))
    kind_of = {int(pid): kind for kind, pid in pids.items()}
    handoffs = [line.split() for line in open(os.path.join(out, "handoffs"))]
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
    parts = collections.defaultdict(lambda: collections.defaultdict(list))
    calls_seen = collections.defaultdict(collections.Counter)
    next_handoff = 0
    for i, (t0, pid, _, _, name, rest) in enumerate(events):
        if not (pid == holder and name == "raw_syscalls:sys_enter"
                and rest.startswith(f"NR {FLOCK} ") and f", {LOCK_UN}," in rest):
            continue
        if next_handoff >= len(handoffs):
            break
        kind, released, acquired = handoffs[next_handoff]
        next_handoff += 1
        # The waiter's clock read, on perf's clock: the holder read the wall
        # clock just before its LOCK_UN, which perf saw at t0.
        t_acquired = t0 + (int(acquired) - int(released)) / 1e3
        waiter = woken = running = returned = None
        calls, pending = [], {}
        faults = switched_out = 0
        for at, epid, etid, _, ename, erest in events[i + 1:]:
            if at > t_acquired:
                break
            if waiter is None:
                if ename == "sched:sched_waking":
                    tid = int(re.search(r" pid=(\d+)", erest).group(1))
                    if kind_of.get(process_of.get(tid)) == kind:
                        waiter, woken = tid, at
            elif running is None:
                if ename == "sched:sched_switch" and f"next_pid={waiter} " in erest:
                    running = at
            elif returned is None:
                if etid == waiter and ename == "raw_syscalls:sys_exit" and erest.startswith(f"NR {FLOCK} "):
                    returned = at
            elif epid == process_of[waiter]:
                if (etid == waiter and ename == "raw_syscalls:sys_enter"
                        and erest.startswith(f"NR {FLOCK} ") and f", {LOCK_UN}," in erest):
                    # Its release, which comes after its clock read: a tighter
                    # bound than the clock alignment, whose error is the
                    # holder's own time from its clock read to its LOCK_UN.
                    t_acquired = at
                    break
                if ename == "exceptions:page_fault_user":
                    faults += 1
                elif ename == "sched:sched_switch" and f"prev_pid={etid} " in erest:
                    switched_out += 1
                elif ename == "raw_syscalls:sys_enter":
                    pending[etid] = (int(erest.split()[1]), at)
                elif ename == "raw_syscalls:sys_exit" and etid in pending:
                    nr, start = pending.pop(etid)
                    calls.append((nr, at - start))
        if returned is None:
            continue  # some event was lost; skip this hand-off
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
          "tracepoints (sched_waking, sched_switch, raw_syscalls) recorded by `perf record -a`; the "
          "waiter's own clock read is placed on perf's clock through the holder's clock read just "
          "before its release, and capped by the waiter's own release that follows it, so the last "
          "segment is good to about 1 µs. Tracing makes every "
          "system call and switch slower, so the totals are above bench/RESULTS.md's; compare the "
          "rows with each other.\n")
    print("Median µs per segment, " + ", ".join(f"{len(parts[k]['total'])} {k}" for k in kinds)
          + " hand-offs.\n")
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
    if len(sys.argv) == 4 and sys.argv[1] == "drive":
        drive(int(sys.argv[2]), sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "analyze":
        analyze(sys.argv[2])
    else:
        sys.exit(__doc__)
