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
mod holders;
mod holds;
mod lock;
mod lock_core;
mod mode;
mod open;
#[cfg(target_os = "linux")]
mod signal;
mod sys;
mod wait;

pub use error::LockError;
pub use group::LockGroup;
pub use holders::{Holder, holders, waiters};
pub use lock::{Lock, LockGuard};
pub use mode::Mode;
#[cfg(unix)]
pub use open::{CREATE_MODE, OPEN_FLAGS};
pub use open::{FileId, OpenError, OpenStep, Opener, invalid_path_reason, open_lock_file};

/// Names a lock on the file at `path`, like locket.py's `lock_file(path)`.
///
/// Nothing is touched yet: the file is opened (and created if missing) by the
/// first acquire, which is also when its identity becomes known. The handle
/// waits forever unless given a timeout with [`Lock::with_timeout`].
pub fn lock_file(path: impl Into<std::path::PathBuf>) -> Lock {
    Lock::at_path(path.into(), None)
}
