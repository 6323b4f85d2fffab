//! The native peer: one `locket` handle driven by the line protocol of
//! `tests/peers/README.md`, for the cross-process tests and the benchmark.
//!
//! Usage: `locket-peer [--raw] PATH [COMMAND [ARG]...]`. It prints `ready`,
//! then answers one command a line on stdin. With COMMAND (its words as
//! separate arguments, so that a path in them may hold spaces) it runs that
//! alone, prints its answer without `ready`, and exits with 0 unless the
//! answer is an error.
//!
//! `--raw` takes a raw std `File::lock` on PATH instead of a `locket`
//! handle: the benchmark's floor. It knows `acquire` (waiting forever, or
//! once with `acquire 0`), `release` and the measurement commands.
//!
//! Beyond the common commands it knows `timeouts N MS`, which makes N timed
//! acquires on a second handle that must each time out after MS (the first
//! handle must hold the lock), and reports the process's open descriptors,
//! threads and POSIX timers before and after, as `fds A B threads C D timers
//! E F`. With `LOCKET_PEER_SIGUSR1=1` in its environment it installs a
//! handler for SIGUSR1 without `SA_RESTART`, so that each SIGUSR1 interrupts
//! whatever system call it is blocked in, and counts them: `signals` answers
//! `signals N`.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use locket::{LockError, Mode};

/// What the peer locks with.
enum Locker {
    Locket(locket::Lock),
    Raw(File),
}

impl Locker {
    /// Acquires in `mode`, waiting as `timeout` says; `Err` is the answer line.
    fn acquire(&self, mode: Mode, timeout: Option<Duration>) -> Result<(), String> {
        match self {
            Locker::Locket(lock) => lock.acquire_with(mode, timeout).map_err(|e| error_line(&e)),
            Locker::Raw(file) => {
                let got = match (mode, timeout) {
                    (Mode::Exclusive, None) => file.lock().map(|()| true),
                    (Mode::Exclusive, Some(t)) if t.is_zero() => match file.try_lock() {
                        Ok(()) => Ok(true),
                        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
                        Err(std::fs::TryLockError::Error(e)) => Err(e),
                    },
                    _ => return Err(
                        "error: unknown-command: --raw waits forever or tries once, exclusively"
                            .to_owned(),
                    ),
                };
                match got {
                    Ok(true) => Ok(()),
                    Ok(false) => Err("error: timeout: it is held elsewhere".to_owned()),
                    Err(e) => Err(format!("error: io: {e}")),
                }
            }
        }
    }

    fn release(&self) -> Result<(), String> {
        match self {
            Locker::Locket(lock) => lock.release().map_err(|e| error_line(&e)),
            Locker::Raw(file) => file.unlock().map_err(|e| format!("error: io: {e}")),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let raw = args.first().is_some_and(|a| a == "--raw");
    if raw {
        args.remove(0);
    }
    if args.is_empty() {
        bail!("usage: locket-peer [--raw] PATH [COMMAND [ARG]...]");
    }
    let path = std::path::PathBuf::from(args.remove(0));
    let command: Vec<String> = args
        .into_iter()
        .map(|a| {
            a.into_string()
                .map_err(|a| anyhow::anyhow!("{a:?} is not UTF-8"))
        })
        .collect::<anyhow::Result<_>>()?;
    let locker = if raw {
        let file = locket_tests::raw_lock_file(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        Locker::Raw(file)
    } else {
        Locker::Locket(locket::lock_file(&path))
    };
    if std::env::var_os("LOCKET_PEER_SIGUSR1").is_some() {
        count_sigusr1()?;
    }
    let mut out = std::io::stdout().lock();
    if !command.is_empty() {
        let words: Vec<&str> = command.iter().map(String::as_str).collect();
        let answer = answer(&locker, &path, &words, &mut out)?;
        writeln!(out, "{answer}")?;
        if answer.starts_with("error:") {
            std::process::exit(1);
        }
        return Ok(());
    }
    writeln!(out, "ready")?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = answer(&locker, &path, &words, &mut out)?;
        writeln!(out, "{answer}")?;
        out.flush()?;
    }
    Ok(())
}

/// The answer to one command, given as its words. `exit` exits; `handoff` also prints its
/// `waiting` line to `out` before it waits.
fn answer(
    locker: &Locker,
    path: &Path,
    words: &[&str],
    out: &mut impl Write,
) -> anyhow::Result<String> {
    let answer = match words {
        ["acquire", rest @ ..] => acquired(locker.acquire(Mode::Exclusive, timeout(rest)?)),
        ["acquire-shared", rest @ ..] => acquired(locker.acquire(Mode::Shared, timeout(rest)?)),
        ["release"] => match locker.release() {
            Ok(()) => "released".to_owned(),
            Err(e) => e,
        },
        ["handoff", rest @ ..] => {
            let timeout = timeout(rest)?;
            writeln!(out, "waiting")?;
            out.flush()?;
            handoff(locker, timeout)
        }
        ["bench", n, rest @ ..] => bench(locker, n.parse()?, timeout(rest)?),
        ["contend", data, ms] => {
            contend(locker, Path::new(data), Duration::from_millis(ms.parse()?))?
        }
        ["increment", data, n] => increment(locker, Path::new(data), n.parse()?)?,
        ["timeouts", n, ms] => timeouts(path, n.parse()?, Duration::from_millis(ms.parse()?))?,
        ["signals"] => format!("signals {}", SIGNALS.load(Ordering::Relaxed)),
        ["exit"] => std::process::exit(0),
        ["exit", code] => std::process::exit(code.parse()?),
        _ => format!("error: unknown-command: {:?}", words.join(" ")),
    };
    Ok(answer)
}

fn timeout(rest: &[&str]) -> anyhow::Result<Option<Duration>> {
    match rest {
        [] => Ok(None),
        [ms] => Ok(Some(Duration::from_millis(ms.parse()?))),
        _ => bail!("expected at most one timeout"),
    }
}

fn acquired(result: Result<(), String>) -> String {
    match result {
        Ok(()) => "acquired".to_owned(),
        Err(e) => e,
    }
}

/// `error: KIND: MESSAGE`, with the protocol's name for the error.
fn error_line(e: &LockError) -> String {
    let kind = match e {
        LockError::Timeout { .. } => "timeout",
        LockError::NotLocked { .. } => "not-locked",
        LockError::AlreadyLocked { .. } => "already-locked",
        LockError::Deadlock { .. } => "deadlock",
        LockError::InvalidPath { .. } => "invalid-path",
        LockError::NotRegularFile { .. } => "not-regular-file",
        LockError::MissingParent { .. } => "missing-parent",
        LockError::AccessDenied { .. } => "access-denied",
        _ => "io",
    };
    format!("error: {kind}: {e}")
}

/// Acquires, reads the wall clock, releases: `at NS`, the time of the
/// acquire in nanoseconds since the Unix epoch.
fn handoff(locker: &Locker, timeout: Option<Duration>) -> String {
    if let Err(e) = locker.acquire(Mode::Exclusive, timeout) {
        return e;
    }
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    match locker.release() {
        Ok(()) => format!("at {at}"),
        Err(e) => e,
    }
}

/// `bench NS`: the mean nanoseconds of one uncontended acquire+release, over `n`.
fn bench(locker: &Locker, n: u32, timeout: Option<Duration>) -> String {
    let started = Instant::now();
    for _ in 0..n {
        if let Err(e) = locker
            .acquire(Mode::Exclusive, timeout)
            .and_then(|()| locker.release())
        {
            return e;
        }
    }
    format!(
        "bench {:.1}",
        started.elapsed().as_nanos() as f64 / f64::from(n.max(1))
    )
}

/// Adds one to the number in `data` under the lock: read, add, write, release.
fn add_one(locker: &Locker, data: &Path) -> anyhow::Result<Result<(), String>> {
    if let Err(e) = locker.acquire(Mode::Exclusive, None) {
        return Ok(Err(e));
    }
    let text =
        std::fs::read_to_string(data).with_context(|| format!("reading {}", data.display()))?;
    let value: u64 = if text.trim().is_empty() {
        0
    } else {
        text.trim().parse()?
    };
    std::fs::write(data, format!("{}\n", value + 1))?;
    Ok(locker.release())
}

/// `contended N`: rounds of [`add_one`] for `how_long`.
fn contend(locker: &Locker, data: &Path, how_long: Duration) -> anyhow::Result<String> {
    let until = Instant::now() + how_long;
    let mut rounds = 0u64;
    while Instant::now() < until {
        if let Err(e) = add_one(locker, data)? {
            return Ok(e);
        }
        rounds += 1;
    }
    Ok(format!("contended {rounds}"))
}

/// `incremented N`: `n` rounds of [`add_one`].
fn increment(locker: &Locker, data: &Path, n: u64) -> anyhow::Result<String> {
    for _ in 0..n {
        if let Err(e) = add_one(locker, data)? {
            return Ok(e);
        }
    }
    Ok(format!("incremented {n}"))
}

fn timeouts(path: &Path, n: u32, each: Duration) -> anyhow::Result<String> {
    let counts = || {
        (
            locket_tests::entries("/proc/self/fd"),
            locket_tests::entries("/proc/self/task"),
            locket_tests::posix_timers(std::process::id()),
        )
    };
    let before = counts();
    for _ in 0..n {
        let other = locket::lock_file(path);
        match other.acquire_with(Mode::Exclusive, Some(each)) {
            Err(LockError::Timeout { .. }) => {}
            other => bail!("expected a timeout, got {other:?}"),
        }
    }
    let after = counts();
    Ok(format!(
        "fds {} {} threads {} {} timers {} {}",
        before.0, after.0, before.1, after.1, before.2, after.2
    ))
}

static SIGNALS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_sigusr1(_: libc::c_int) {
    SIGNALS.fetch_add(1, Ordering::Relaxed);
}

fn count_sigusr1() -> anyhow::Result<()> {
    let handler = on_sigusr1 as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only touches an atomic, which is async-signal-safe,
    // and takes the one argument that flags 0 ask for. No SA_RESTART: blocked
    // calls return EINTR.
    let installed = unsafe { locket_cmdline::handle_signals(&[libc::SIGUSR1], handler, 0) }
        .context("installing the SIGUSR1 handler")?;
    anyhow::ensure!(
        installed == 1,
        "SIGUSR1 is ignored in this process (inherited from its parent), so the \
         signal checks cannot run"
    );
    Ok(())
}
