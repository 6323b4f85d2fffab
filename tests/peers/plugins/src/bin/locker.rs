//! The plugin peer: a guest driven by the line protocol of
//! `tests/peers/README.md`, for the tests, the benchmark, and trying locks by
//! hand.
//!
//! ```text
//! locket-host run --dir .::. locker.wasm x.lock
//! ```
//!
//! It prints `ready`, then answers each line. Besides the common commands it
//! has a plugin's own. A line may start with `#N` to act on handle N;
//! otherwise it acts on handle 0, which the optional PATH argument opens at
//! start.
//!
//! | line                   | answer                                    |
//! |------------------------|-------------------------------------------|
//! | `open PATH`            | `opened N` (a new handle N); `open` alone tries the empty path |
//! | `acquire [MS]`         | `acquired` or `error: KIND: MESSAGE`      |
//! | `acquire-shared [MS]`  | the same                                  |
//! | `release`              | `released` or `error: KIND: MESSAGE`      |
//! | `is-locked`            | `true` or `false`                         |
//! | `token`                | `token N` (an etcd lock's fencing token) or `token none` |
//! | `drop`                 | `dropped` (closing the handle)            |
//! | `open-many PATH N`     | `opened K` handles on PATH-0 ... PATH-(N-1), stopping at the first error, which follows as `error: ...` |
//! | `args`                 | `args ARGV0 ARG1 ...` (its own arguments) |
//! | `env NAME`             | `env VALUE`, or `env-unset`               |
//! | `bench N [MS]`         | `bench NS`: the mean ns of N acquire+release cycles on handle 0 (timeout MS), less an empty loop of N, timed in the guest |
//! | `churn N FREE HELD`    | `churned N` after N rounds of: a new handle on FREE acquired, released and dropped; a try (timeout 0) on HELD, which must time out; and every 10th round a 1 ms timed wait on HELD, which must time out too |
//! | `exit [CODE]`          | exits with that status, 0 by default (exit-with-code) |
//! | `std-exit CODE`        | `std::process::exit(CODE)`, which WASI 0.2 reports as success or failure only |
//! | `trap`                 | traps (a Rust panic)                      |
//! | `spin`                 | loops forever                             |
//! | `alloc`                | allocates memory, a MiB at a time, forever |
//! | `acquire-kept`         | `acquired K`: acquires every handle `open-many` made (or the first error) |
//! | `handoff [MS]`         | `waiting`, then, once it has acquired handle 0: `at NS` (the wall clock, which the host shares, in ns since the Unix epoch), releasing right after |
//! | `contend DATA MS`      | `contended N`: for MS milliseconds, acquire handle 0, add one to the number in file DATA, release; N rounds |
//! | `increment DATA N`     | `incremented N`: the same N times |
//!
//! In PATH, `\0`, `\s` and `\n` stand for a NUL byte, a space and a newline,
//! which a line of words cannot carry otherwise.
//!
//! `MS` is a timeout in milliseconds; without it an acquire waits forever.
//! KIND is the WIT error case: `timeout`, `not-locked`, `deadlock`,
//! `access-denied`, `invalid-path`, `limit` or `io`; a line it does not know
//! is `unknown-command`.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::time::Duration;

use locket_guest::{Error, Lock, Mode};

fn main() {
    let mut handles: BTreeMap<usize, Lock> = BTreeMap::new();
    let mut next = 0;
    let mut out = std::io::stdout();
    if let Some(path) = std::env::args().nth(1) {
        match locket_guest::lock_file(&path) {
            Ok(lock) => {
                handles.insert(0, lock);
                next = 1;
            }
            Err(e) => {
                let _ = writeln!(out, "{}", error_line(&e));
                locket_guest::exit(1);
            }
        }
    }
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    let mut kept = Vec::new(); // handles from open-many, kept open
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let mut words: Vec<&str> = line.split_whitespace().collect();
        let mut id = 0;
        if let Some(first) = words.first()
            && let Some(n) = first.strip_prefix('#')
        {
            id = n.parse().unwrap_or(usize::MAX);
            words.remove(0);
        }
        let answer =
            match words.as_slice() {
                ["open", path @ ..] if path.len() <= 1 => match locket_guest::lock_file(&unescape(
                    path.first().copied().unwrap_or_default(),
                )) {
                    Ok(lock) => {
                        handles.insert(next, lock);
                        next += 1;
                        format!("opened {}", next - 1)
                    }
                    Err(e) => error_line(&e),
                },
                ["open-many", prefix, n] => {
                    let n: usize = n.parse().unwrap_or(0);
                    let mut answer = String::new();
                    let before = kept.len();
                    for i in 0..n {
                        match locket_guest::lock_file(&format!("{prefix}-{i}")) {
                            Ok(lock) => kept.push(lock),
                            Err(e) => {
                                answer = format!("\n{}", error_line(&e));
                                break;
                            }
                        }
                    }
                    format!("opened {}{answer}", kept.len() - before)
                }
                ["bench", n, t @ ..] if t.len() <= 1 => {
                    bench(handles.get(&0), n.parse().unwrap_or(0), t)
                }
                ["handoff", t @ ..] if t.len() <= 1 => match handles.get(&0) {
                    None => "error: no handle #0".to_owned(),
                    Some(lock) => handoff(&mut out, lock, t),
                },
                ["contend", data, ms] => match handles.get(&0) {
                    None => "error: no handle #0".to_owned(),
                    Some(lock) => {
                        let ms = Duration::from_millis(ms.parse().unwrap_or(0));
                        contend(lock, data, Rounds::Until(std::time::Instant::now() + ms))
                    }
                },
                ["increment", data, n] => match handles.get(&0) {
                    None => "error: no handle #0".to_owned(),
                    Some(lock) => contend(lock, data, Rounds::Count(n.parse().unwrap_or(0))),
                },
                ["churn", n, free, held] => churn(n.parse().unwrap_or(0), free, held),
                ["args"] => format!("args {}", std::env::args().collect::<Vec<_>>().join(" ")),
                ["env", name] => std::env::var(name)
                    .map_or_else(|_| "env-unset".to_owned(), |v| format!("env {v}")),
                ["exit"] => locket_guest::exit(0),
                ["exit", code] => locket_guest::exit(code.parse().unwrap_or(1)),
                ["std-exit", code] => std::process::exit(code.parse().unwrap_or(1)),
                ["trap"] => panic!("trap requested"),
                ["alloc"] => {
                    let mut hoard: Vec<Vec<u8>> = Vec::new();
                    loop {
                        hoard.push(vec![1; 1 << 20]);
                        std::hint::black_box(&hoard);
                    }
                }
                ["acquire-kept"] => {
                    let mut answer = format!("acquired {}", kept.len());
                    for (i, lock) in kept.iter().enumerate() {
                        if let Err(e) = lock.acquire_with(Mode::Exclusive, Some(Duration::ZERO)) {
                            answer = format!("acquired {i}\n{}", error_line(&e));
                            break;
                        }
                    }
                    answer
                }
                ["spin"] => loop {
                    std::hint::spin_loop();
                },
                [command, rest @ ..] => match handles.get(&id) {
                    None => format!("error: no handle #{id}"),
                    Some(lock) => match (*command, rest) {
                        ("acquire", t) => acquired(lock, Mode::Exclusive, t),
                        ("acquire-shared", t) => acquired(lock, Mode::Shared, t),
                        ("release", []) => match lock.release() {
                            Ok(()) => "released".to_owned(),
                            Err(e) => error_line(&e),
                        },
                        ("is-locked", []) => lock.is_locked().to_string(),
                        ("token", []) => match lock.token() {
                            Some(token) => format!("token {token}"),
                            None => "token none".to_owned(),
                        },
                        ("drop", []) => {
                            handles.remove(&id);
                            "dropped".to_owned()
                        }
                        _ => format!("error: unknown-command: {line:?}"),
                    },
                },
                [] => continue,
            };
        let _ = writeln!(out, "{answer}");
        let _ = out.flush();
    }
}

/// `[MS]`: no timeout, or MS milliseconds; `Err` is the answer line.
fn parse_timeout(words: &[&str]) -> Result<Option<Duration>, String> {
    match words {
        [] => Ok(None),
        [ms] => match ms.parse() {
            Ok(ms) => Ok(Some(Duration::from_millis(ms))),
            Err(_) => Err(format!("error: unknown-command: bad timeout {ms:?}")),
        },
        _ => Err("error: unknown-command: too many arguments".to_owned()),
    }
}

fn acquired(lock: &Lock, mode: Mode, timeout: &[&str]) -> String {
    let timeout = match parse_timeout(timeout) {
        Ok(timeout) => timeout,
        Err(e) => return e,
    };
    match lock.acquire_with(mode, timeout) {
        Ok(()) => "acquired".to_owned(),
        Err(e) => error_line(&e),
    }
}

/// Churns handles, acquires and timeouts, for leak checks.
fn churn(n: u64, free: &str, held: &str) -> String {
    let run = || -> Result<(), String> {
        let held = locket_guest::lock_file(held).map_err(|e| e.to_string())?;
        for i in 0..n {
            let lock = locket_guest::lock_file(free).map_err(|e| e.to_string())?;
            lock.acquire()
                .and_then(|()| lock.release())
                .map_err(|e| e.to_string())?;
            drop(lock);
            let timeout = if i % 10 == 0 { 1 } else { 0 };
            match held.acquire_with(Mode::Exclusive, Some(Duration::from_millis(timeout))) {
                Err(Error::Timeout) => {}
                other => return Err(format!("expected a timeout, got {other:?}")),
            }
        }
        Ok(())
    };
    match run() {
        Ok(()) => format!("churned {n}"),
        Err(e) => format!("error: {e}"),
    }
}

/// Times `n` uncontended acquire+release cycles with `timeout`, and an
/// empty loop of `n` as the baseline to subtract, with the guest's monotonic
/// clock: `bench NS`, the mean ns of one cycle.
fn bench(lock: Option<&Lock>, n: u64, timeout: &[&str]) -> String {
    let Some(lock) = lock else {
        return "error: bench needs handle 0".to_owned();
    };
    let timeout = match parse_timeout(timeout) {
        Ok(timeout) => timeout,
        Err(e) => return e,
    };
    let started = std::time::Instant::now();
    for _ in 0..n {
        if let Err(e) = lock
            .acquire_with(Mode::Exclusive, timeout)
            .and_then(|()| lock.release())
        {
            return error_line(&e);
        }
    }
    let locked = started.elapsed();
    let started = std::time::Instant::now();
    for i in 0..n {
        std::hint::black_box(i);
    }
    let empty = started.elapsed();
    let per_cycle = (locked.as_nanos() as f64 - empty.as_nanos() as f64) / n.max(1) as f64;
    format!("bench {per_cycle:.1}")
}

fn unescape(path: &str) -> String {
    path.replace("\\0", "\0")
        .replace("\\s", " ")
        .replace("\\n", "\n")
}

fn error_line(e: &Error) -> String {
    format!("error: {e}")
}

/// Says `waiting`, acquires, reads the wall clock, releases: for measuring
/// hand-off latency against other processes' clocks.
fn handoff(out: &mut impl Write, lock: &Lock, timeout: &[&str]) -> String {
    let _ = writeln!(out, "waiting");
    let _ = out.flush();
    let timeout = timeout
        .first()
        .map(|ms| Duration::from_millis(ms.parse().unwrap_or(0)));
    if let Err(e) = lock.acquire_with(Mode::Exclusive, timeout) {
        return error_line(&e);
    }
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    match lock.release() {
        Ok(()) => format!("at {at}"),
        Err(e) => error_line(&e),
    }
}

/// How many rounds `contend` runs.
enum Rounds {
    /// Until this instant (`contend`).
    Until(std::time::Instant),
    /// This many (`increment`).
    Count(u64),
}

/// Adds one to the number in `data` under the lock, round after round:
/// `contended N` until a deadline, or `incremented N` for a count.
fn contend(lock: &Lock, data: &str, rounds: Rounds) -> String {
    let more = |done: u64| match rounds {
        Rounds::Until(until) => std::time::Instant::now() < until,
        Rounds::Count(n) => done < n,
    };
    let mut done = 0u64;
    while more(done) {
        if let Err(e) = lock.acquire() {
            return error_line(&e);
        }
        let value: u64 = std::fs::read_to_string(data)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        if let Err(e) = std::fs::write(data, format!("{}\n", value + 1)) {
            return format!("error: io: writing {data}: {e}");
        }
        if let Err(e) = lock.release() {
            return error_line(&e);
        }
        done += 1;
    }
    match rounds {
        Rounds::Until(_) => format!("contended {done}"),
        Rounds::Count(_) => format!("incremented {done}"),
    }
}
