//! File-based locks with the semantics of Python's
//! [locket](https://pypi.org/project/locket/), for threads and processes.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), locket::LockError> {
//! // Like `locket.lock_file(path, timeout=5)`: nothing is touched yet.
//! let lock = locket::lock_file("shared.lock").with_timeout(Some(Duration::from_secs(5)));
//! {
//!     let _guard = lock.lock()?; // `with lock:`
//!     // ... work on the files the lock protects ...
//! } // released here
//!
//! lock.acquire()?; // or explicitly
//! lock.release()?;
//! # Ok(())
//! # }
//! ```
//!
//! # Semantics
//!
//! - A lock is identified by the file that is locked, not by how its path is
//!   spelled: `x.lock`, `./x.lock`, an absolute path, a symlink and a hard link
//!   all name the same lock, within a process and across processes.
//! - [`Lock::acquire`] blocks until the lock is free or the handle's timeout
//!   expires: `None` waits forever, a zero timeout tries once, `Some(d)` waits
//!   at most `d`. A waiter blocks in the kernel, so it takes the lock as soon as
//!   it is released, with or without a timeout, and burns no CPU meanwhile.
//! - **Ownership is per handle.** Each [`Lock`] holds its own OS lock, and only
//!   the handle that acquired a lock may release it. Handles are `Send + Sync`,
//!   so any thread may release the lock a handle holds. A second handle for the
//!   same file, in the same process or another, is excluded while the first
//!   holds it in a conflicting mode. (In locket.py every locker of a path shares
//!   one lock object; per-handle ownership is what keeps [`LockGuard`] sound.)
//! - Locks are not reentrant: acquiring on a handle that already holds the lock,
//!   in either mode, fails at once with [`LockError::AlreadyLocked`].
//!   Releasing a handle that holds nothing fails with [`LockError::NotLocked`].
//! - Shared locks ([`Lock::acquire_shared`]) exclude exclusive locks and not
//!   each other.
//! - Handles made through a [`LockGroup`] detect self-deadlock: a wait that only
//!   the group's own holds could end fails at once with [`LockError::Deadlock`].
//!
//! # Operating-system locks
//!
//! On Unix the lock is `flock(2)`, so it interoperates with Python's locket and
//! `fcntl.flock`, py-filelock's `UnixFileLock`, util-linux `flock(1)` and Rust's
//! `File::lock`. On Windows it is `LockFileEx` over the whole file, which
//! overlaps locket.py's one-byte `LockFile`.
//!
//! The lock file is created if missing (mode 0666 before umask), and is never
//! truncated or deleted: deleting a lock file lets two holders in. Only regular
//! files are locked. A missing parent directory is an error, not created.
//!
//! Timed waits on Linux interrupt a blocking `flock` with a thread-directed
//! timer signal, `SIGRTMAX - 1`, whose no-op handler locket installs the first
//! time it is needed, if that signal still has its default disposition. If the
//! application handles that signal itself, timed waits poll instead (50 µs
//! backoff growing to 5 ms), as they do on other platforms.

#![warn(missing_docs)]

mod error;
mod future;
mod group;
mod guard;
mod lock;
mod open;
mod sys;

pub use error::LockError;
pub use group::LockGroup;
pub use guard::LockGuard;
pub use lock::Lock;
pub use open::{FileId, OpenError, Opener};

use std::path::PathBuf;
use std::time::Duration;

/// How a lock is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// One holder at a time (`LOCK_EX`), as in locket.py.
    Exclusive,
    /// Any number of shared holders, but no exclusive one (`LOCK_SH`).
    Shared,
}

impl Mode {
    /// Whether a hold in `self` mode excludes a hold in `other` mode.
    #[must_use]
    pub fn conflicts_with(self, other: Mode) -> bool {
        self == Mode::Exclusive || other == Mode::Exclusive
    }
}

/// Names a lock on the file at `path`, like locket.py's `lock_file(path)`.
///
/// Nothing is touched yet: the file is opened (and created if missing) by the
/// first acquire, which is also when its identity becomes known. The handle
/// waits forever unless given a timeout with [`Lock::with_timeout`].
pub fn lock_file(path: impl Into<PathBuf>) -> Lock {
    Lock::new(path.into(), None)
}

/// Parses a duration: a number with an optional unit (`ns`, `us`, `ms`, `s`,
/// `m`, `h`); a bare number is seconds, and fractions are allowed
/// (`500ms`, `2s`, `1m`, `0.5`).
///
/// This is the syntax of durations on the `locket` and `locket-host` command
/// lines, shared so that they read the same.
///
/// # Errors
///
/// A message naming the problem: not a number, an unknown unit, negative, or
/// longer than a century.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number.parse().map_err(|_| {
        format!(
            "invalid duration {s:?}: expected a number with an optional unit, like 500ms, 2s or 1m"
        )
    })?;
    let scale = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "invalid duration {s:?}: unknown unit {other:?} (use ns, us, ms, s, m or h)"
            ));
        }
    };
    let duration = Duration::try_from_secs_f64(value * scale)
        .map_err(|e| format!("invalid duration {s:?}: {e}"))?;
    // Far beyond any run, and small enough to add to a clock without overflow.
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    if duration > CENTURY {
        return Err(format!("invalid duration {s:?}: longer than a century"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_fractions_and_bare_seconds() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        for bad in [
            "",
            "ms",
            "-1s",
            "1.2.3s",
            "5 parsecs",
            "1e9999",
            "10000000000000000000",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
