//! A test helper that drives one `locket` handle from lines on stdin, so that
//! tests can run real lock holders and waiters in separate processes.
//!
//! Usage: `locket-helper PATH`. It prints `ready`, then answers each command
//! on its own line:
//!
//! | command                    | answer                                   |
//! |----------------------------|------------------------------------------|
//! | `acquire [MS]`             | `acquired` or `error: KIND: MESSAGE`     |
//! | `acquire-shared [MS]`      | the same                                 |
//! | `release`                  | `released` or `error: KIND: MESSAGE`     |
//! | `cycles N MS`              | `fds A B threads C D timers E F`         |
//! | `exit`                     | exits with status 0                      |
//!
//! `MS` is a timeout in milliseconds; without it the acquire waits forever.
//! `cycles N MS` makes N timed acquires that each time out after MS on a
//! second handle (the first must hold the lock), and reports the process's
//! open descriptors, threads and POSIX timers before and after. KIND is one of `timeout`,
//! `not-locked`, `already-locked`, `deadlock`, `invalid-path`,
//! `not-regular-file`, `missing-parent`, `access-denied`, `io`.
//!
//! With `LOCKET_HELPER_SIGUSR1=1` in its environment it installs a handler for
//! SIGUSR1 without `SA_RESTART`, so that each SIGUSR1 interrupts whatever
//! system call it is blocked in, and counts them: `signals` answers
//! `signals N`.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use locket::{LockError, Mode};

fn main() -> anyhow::Result<()> {
    let path = std::env::args_os()
        .nth(1)
        .context("usage: locket-helper PATH")?;
    let lock = locket::lock_file(&path);
    if std::env::var_os("LOCKET_HELPER_SIGUSR1").is_some() {
        count_sigusr1()?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words.as_slice() {
            ["acquire", rest @ ..] => acquired(lock.acquire_with(Mode::Exclusive, timeout(rest)?)),
            ["acquire-shared", rest @ ..] => {
                acquired(lock.acquire_with(Mode::Shared, timeout(rest)?))
            }
            ["release"] => match lock.release() {
                Ok(()) => "released".to_owned(),
                Err(e) => error_line(&e),
            },
            ["cycles", n, ms] => cycles(&path, n.parse()?, Duration::from_millis(ms.parse()?))?,
            ["signals"] => format!("signals {}", SIGNALS.load(Ordering::Relaxed)),
            ["exit"] => return Ok(()),
            _ => bail!("unknown command {line:?}"),
        };
        writeln!(out, "{answer}")?;
        out.flush()?;
    }
    Ok(())
}

fn timeout(rest: &[&str]) -> anyhow::Result<Option<Duration>> {
    match rest {
        [] => Ok(None),
        [ms] => Ok(Some(Duration::from_millis(ms.parse()?))),
        _ => bail!("expected at most one timeout"),
    }
}

fn acquired(result: Result<(), LockError>) -> String {
    match result {
        Ok(()) => "acquired".to_owned(),
        Err(e) => error_line(&e),
    }
}

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

fn cycles(path: &std::ffi::OsStr, n: u32, each: Duration) -> anyhow::Result<String> {
    let before = (
        count("/proc/self/fd")?,
        count("/proc/self/task")?,
        timers()?,
    );
    for _ in 0..n {
        let other = locket::lock_file(path);
        match other.acquire_with(Mode::Exclusive, Some(each)) {
            Err(LockError::Timeout { .. }) => {}
            other => bail!("expected a timeout, got {other:?}"),
        }
    }
    let after = (
        count("/proc/self/fd")?,
        count("/proc/self/task")?,
        timers()?,
    );
    Ok(format!(
        "fds {} {} threads {} {} timers {} {}",
        before.0, after.0, before.1, after.1, before.2, after.2
    ))
}

/// The POSIX timers this process has.
fn timers() -> anyhow::Result<usize> {
    Ok(std::fs::read_to_string("/proc/self/timers")?
        .lines()
        .filter(|l| l.starts_with("ID:"))
        .count())
}

fn count(dir: &str) -> anyhow::Result<usize> {
    Ok(std::fs::read_dir(dir)
        .with_context(|| format!("reading {dir}"))?
        .count())
}

static SIGNALS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_sigusr1(_: libc::c_int) {
    SIGNALS.fetch_add(1, Ordering::Relaxed);
}

fn count_sigusr1() -> anyhow::Result<()> {
    // SAFETY: `action` is zeroed plain data with the fields sigaction reads
    // set; the handler only touches an atomic, which is async-signal-safe.
    let rc = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigusr1 as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = 0; // no SA_RESTART: blocked calls return EINTR
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut())
    };
    anyhow::ensure!(rc == 0, "sigaction: {}", std::io::Error::last_os_error());
    Ok(())
}
