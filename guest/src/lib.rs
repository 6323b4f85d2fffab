//! The guest SDK for WebAssembly components that import `locket:lock/locket`:
//! file locks that exclude, and are excluded by, native processes locking the
//! same file.
//!
//! It mirrors the native `locket` library (package `locket-file`):
//!
//! ```no_run
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), locket_guest::Error> {
//! let lock = locket_guest::lock_file("/data/counter.lock")?
//!     .with_timeout(Some(Duration::from_secs(5)));
//! {
//!     let _guard = lock.lock()?;
//!     // ... change the files the lock protects ...
//! } // released here
//! # Ok(())
//! # }
//! ```
//!
//! Paths are guest paths, resolved against the directories the host granted
//! (`locket-host run --dir HOST::GUEST`). Build for `wasm32-wasip2`.

#![warn(missing_docs)]

use std::cell::Cell;
use std::fmt;
use std::time::Duration;

mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        inline: "
            package locket:guest-sdk;
            world sdk {
                import locket:lock/locket@0.1.1;
                import wasi:cli/exit@0.2.12;
            }
        ",
        world: "locket:guest-sdk/sdk",
        generate_all,
    });
}

use bindings::locket::lock::locket as wit;

/// How a lock is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// One holder at a time, like `flock(fd, LOCK_EX)`.
    Exclusive,
    /// Many shared holders and no exclusive one, like `flock(fd, LOCK_SH)`.
    Shared,
}

/// Why a lock operation failed: the WIT `error` variant.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Not acquired within the timeout (with a zero timeout: held elsewhere).
    Timeout,
    /// `release` on a handle that does not hold the lock.
    NotLocked,
    /// This instance already holds a conflicting lock on the file (through
    /// this handle or another), so waiting could never succeed.
    Deadlock,
    /// Outside the granted directories, or a missing file under a read-only grant.
    AccessDenied,
    /// The path cannot name a lock file (empty, NUL, a directory, FIFO, ...).
    InvalidPath(String),
    /// The instance has as many lock handles as the host allows.
    Limit,
    /// Any other operating-system error, with its message.
    Io(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("timeout: the lock is held elsewhere"),
            Self::NotLocked => f.write_str("not-locked: this handle does not hold the lock"),
            Self::Deadlock => {
                f.write_str("deadlock: this instance already holds a conflicting lock on the file")
            }
            Self::AccessDenied => f.write_str("access-denied: outside the granted directories"),
            Self::InvalidPath(why) => write!(f, "invalid-path: {why}"),
            Self::Limit => f.write_str("limit: too many lock handles"),
            Self::Io(message) => write!(f, "io: {message}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<wit::Error> for Error {
    fn from(e: wit::Error) -> Self {
        match e {
            wit::Error::Timeout => Self::Timeout,
            wit::Error::NotLocked => Self::NotLocked,
            wit::Error::Deadlock => Self::Deadlock,
            wit::Error::AccessDenied => Self::AccessDenied,
            wit::Error::InvalidPath(why) => Self::InvalidPath(why),
            wit::Error::Limit => Self::Limit,
            wit::Error::Io(message) => Self::Io(message),
        }
    }
}

/// Names the lock on the file at `path`, like locket's `lock_file(path)`.
///
/// Only the text of the path is checked here; no file is touched until the
/// first acquire. The handle waits forever unless given a timeout.
///
/// # Errors
///
/// [`Error::InvalidPath`] (empty, NUL, trailing slash), [`Error::AccessDenied`]
/// (outside every grant) or [`Error::Limit`].
pub fn lock_file(path: &str) -> Result<Lock, Error> {
    Ok(Lock {
        raw: wit::lock_file(path)?,
        timeout: None,
        generation: Cell::new(0),
    })
}

/// A handle on the lock of one file. It owns what it acquires, and dropping
/// it releases its lock.
#[derive(Debug)]
pub struct Lock {
    raw: wit::Lock,
    timeout: Option<Duration>,
    /// Counts successful acquires, so that a guard releases only its own hold.
    generation: Cell<u64>,
}

impl Lock {
    /// Sets the timeout that [`acquire`](Self::acquire),
    /// [`acquire_shared`](Self::acquire_shared), [`lock`](Self::lock) and
    /// [`lock_shared`](Self::lock_shared) use: `None` waits forever, zero
    /// tries once, `Some(d)` waits at most `d`.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// The handle's timeout.
    #[must_use]
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Acquires the lock exclusively, waiting at most the handle's timeout.
    ///
    /// # Errors
    ///
    /// See [`acquire_with`](Self::acquire_with).
    pub fn acquire(&self) -> Result<(), Error> {
        self.acquire_with(Mode::Exclusive, self.timeout)
    }

    /// Acquires a shared lock, waiting at most the handle's timeout.
    ///
    /// # Errors
    ///
    /// See [`acquire_with`](Self::acquire_with).
    pub fn acquire_shared(&self) -> Result<(), Error> {
        self.acquire_with(Mode::Shared, self.timeout)
    }

    /// Acquires the lock in `mode`, waiting as `timeout` says (ignoring the
    /// handle's own timeout).
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if it stayed held elsewhere; [`Error::Deadlock`] at
    /// once if this instance already holds it in a conflicting mode (through
    /// this handle or another); [`Error::AccessDenied`],
    /// [`Error::InvalidPath`] or [`Error::Io`] for what the filesystem shows.
    pub fn acquire_with(&self, mode: Mode, timeout: Option<Duration>) -> Result<(), Error> {
        let nanos = timeout.map(|t| u64::try_from(t.as_nanos()).unwrap_or(u64::MAX));
        let result = match mode {
            Mode::Exclusive => self.raw.acquire(nanos),
            Mode::Shared => self.raw.acquire_shared(nanos),
        };
        result.map_err(Error::from)?;
        self.generation.set(self.generation.get() + 1);
        Ok(())
    }

    /// Releases the lock this handle holds.
    ///
    /// # Errors
    ///
    /// [`Error::NotLocked`] if this handle holds nothing.
    pub fn release(&self) -> Result<(), Error> {
        self.raw.release().map_err(Error::from)
    }

    /// Whether this handle holds the lock now. A lock in a distributed
    /// namespace can be lost (see [`token`](Self::token)), and then this
    /// turns false.
    #[must_use]
    pub fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }

    /// The fencing token of the grant this handle holds, for a lock in a
    /// distributed (etcd) namespace: it grows with every grant of this
    /// lock, cluster-wide. `None` for a file lock, while nothing is held,
    /// and once the lock is lost.
    ///
    /// A distributed lock is lost when the host is cut off from the cluster
    /// or paused past its lease, perhaps while this guest still acts on it.
    /// Send the token with every change to what the lock protects, and have
    /// that side refuse tokens lower than the highest it has accepted: that
    /// check, not the lock alone, is what stops a stale holder.
    ///
    /// Needs a host of `locket:lock@0.1.1` or later.
    #[must_use]
    pub fn token(&self) -> Option<u64> {
        self.raw.token()
    }

    /// Acquires the lock exclusively and returns a guard that releases it on drop.
    ///
    /// # Errors
    ///
    /// See [`acquire_with`](Self::acquire_with).
    pub fn lock(&self) -> Result<LockGuard<'_>, Error> {
        self.acquire()?;
        Ok(LockGuard {
            lock: self,
            generation: self.generation.get(),
        })
    }

    /// Acquires a shared lock and returns a guard that releases it on drop.
    ///
    /// # Errors
    ///
    /// See [`acquire_with`](Self::acquire_with).
    pub fn lock_shared(&self) -> Result<LockGuard<'_>, Error> {
        self.acquire_shared()?;
        Ok(LockGuard {
            lock: self,
            generation: self.generation.get(),
        })
    }
}

/// Holds a [`Lock`] until dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
#[derive(Debug)]
pub struct LockGuard<'a> {
    lock: &'a Lock,
    generation: u64,
}

impl LockGuard<'_> {
    /// Releases the lock now, reporting any error.
    ///
    /// # Errors
    ///
    /// [`Error::NotLocked`] if the guard's hold was released behind its
    /// back, even if the handle has acquired again since.
    pub fn unlock(self) -> Result<(), Error> {
        let (lock, generation) = (self.lock, self.generation);
        std::mem::forget(self);
        if lock.generation.get() != generation {
            return Err(Error::NotLocked);
        }
        lock.release()
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        // A later hold of the same handle is not this guard's to release.
        if self.lock.generation.get() == self.generation {
            let _ = self.lock.release();
        }
    }
}

/// Ends the program with exit status `code`, which `locket-host run` makes
/// its own exit code (`wasi:cli/exit#exit-with-code`). Rust's
/// `std::process::exit` can only report success or failure on this target.
pub fn exit(code: u8) -> ! {
    bindings::wasi::cli::exit::exit_with_code(code);
    unreachable!("exit-with-code returned")
}
