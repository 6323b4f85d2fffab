use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Why a lock operation failed.
///
/// Every variant names the lock file's path as it was given to
/// [`lock_file`](crate::lock_file), so a message is useful on its own.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// The lock was not acquired within the timeout. With a zero timeout this
    /// means it was held elsewhere at the single try (locket.py's `LockError`
    /// on acquire).
    #[error("{}", timeout_message(path, *timeout))]
    Timeout {
        /// The lock file.
        path: PathBuf,
        /// The timeout that expired; zero for a single try.
        timeout: Duration,
    },

    /// `release` was called on a handle that does not hold the lock, even if
    /// another handle for the same file holds it.
    #[error("cannot release {}: this handle does not hold the lock", path.display())]
    NotLocked {
        /// The lock file.
        path: PathBuf,
    },

    /// `acquire` was called on a handle that already holds the lock (in either
    /// mode) or that another thread is acquiring right now. Locks are not
    /// reentrant, and a shared lock is never silently converted.
    #[error("cannot acquire {}: this handle already holds or is acquiring the lock", path.display())]
    AlreadyLocked {
        /// The lock file.
        path: PathBuf,
    },

    /// The handle belongs to a [`LockGroup`](crate::LockGroup) that already
    /// holds this file in a conflicting mode through another handle. The
    /// group's owner is single-threaded, so the wait could never end.
    #[error("cannot acquire {}: its group already holds a conflicting lock on this file, so waiting would deadlock", path.display())]
    Deadlock {
        /// The lock file.
        path: PathBuf,
    },

    /// The path cannot name a lock file at all: it is empty or contains a NUL byte.
    #[error("invalid lock path {:?}: {reason}", path)]
    InvalidPath {
        /// The path as given.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The path names something other than a regular file. Only regular files
    /// are locked, so that a FIFO or device can never hang or disturb us.
    #[error("cannot lock {}: it is a {kind}, not a regular file", path.display())]
    NotRegularFile {
        /// The lock file.
        path: PathBuf,
        /// What it is instead ("directory", "FIFO", ...).
        kind: &'static str,
    },

    /// The lock file does not exist and cannot be created because its parent
    /// directory does not exist. Parents are never created implicitly.
    #[error("cannot create lock file {}: its parent directory does not exist", path.display())]
    MissingParent {
        /// The lock file.
        path: PathBuf,
    },

    /// The operating system (or, for a custom [`Opener`](crate::Opener), the
    /// sandbox) refused access to the lock file or its directory, or refused to
    /// create it.
    #[error("cannot lock {}: access denied: {source}", path.display())]
    AccessDenied {
        /// The lock file.
        path: PathBuf,
        /// The error that refused access.
        #[source]
        source: io::Error,
    },

    /// Any other operating-system error.
    #[error("cannot lock {}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The error the operating system reported.
        #[source]
        source: io::Error,
    },
}

fn timeout_message(path: &std::path::Path, timeout: Duration) -> String {
    if timeout.is_zero() {
        format!("cannot lock {}: it is held elsewhere", path.display())
    } else {
        format!(
            "cannot lock {}: still held elsewhere after {:?}",
            path.display(),
            timeout
        )
    }
}

impl LockError {
    /// The lock file this error is about.
    #[must_use]
    pub fn path(&self) -> &std::path::Path {
        match self {
            Self::Timeout { path, .. }
            | Self::NotLocked { path }
            | Self::AlreadyLocked { path }
            | Self::Deadlock { path }
            | Self::InvalidPath { path, .. }
            | Self::NotRegularFile { path, .. }
            | Self::MissingParent { path }
            | Self::AccessDenied { path, .. }
            | Self::Io { path, .. } => path,
        }
    }
}
