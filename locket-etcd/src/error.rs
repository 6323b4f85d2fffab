//! The one error type of the crate.

use std::path::PathBuf;
use std::time::Duration;

/// Why a distributed lock operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The lock was held by others for the whole timeout (or, with a zero
    /// timeout, at the single try).
    #[error("timed out waiting for the lock {name} (timeout {timeout:?})")]
    Timeout {
        /// The lock's etcd name.
        name: String,
        /// The timeout that ran out.
        timeout: Option<Duration>,
    },
    /// `release` on a handle that does not hold the lock: it never acquired
    /// it, released it already, or its lease was lost.
    #[error("the lock {name} is not held by this handle")]
    NotLocked {
        /// The lock's etcd name.
        name: String,
    },
    /// This handle already holds the lock, or is acquiring it: locks are
    /// not reentrant.
    #[error("this handle already holds or is acquiring the lock {name}; locks are not reentrant")]
    AlreadyLocked {
        /// The lock's etcd name.
        name: String,
    },
    /// Another handle of the same [`LockGroup`](crate::LockGroup) holds the
    /// lock in a conflicting mode, so waiting could never end.
    #[error("another handle of this group holds the lock {name}; waiting would never end")]
    Deadlock {
        /// The lock's etcd name.
        name: String,
    },
    /// A lock name that cannot be used: empty, `.` or `..` components, NUL,
    /// or too long.
    #[error("invalid lock name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An `etcd://` address that cannot be parsed.
    #[error("invalid etcd address {address:?}: {reason}")]
    InvalidAddress {
        /// The address as given.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A file the connection needs (CA, client certificate or key, password
    /// file) could not be read, or an environment variable is malformed.
    #[error("cannot read the etcd {what} {}: {source}", path.display())]
    Config {
        /// Which file: "CA certificate", "client certificate", ...
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Settings that do not fit together, such as a client certificate
    /// without its key, or a password without a user.
    #[error("etcd settings: {0}")]
    Settings(String),
    /// The cluster refused the user name or password, or the user may not
    /// use the lock's keys.
    #[error("etcd at {endpoints} refused the credentials: {detail}")]
    Auth {
        /// The cluster's endpoints.
        endpoints: String,
        /// etcd's reason (it never contains the password).
        detail: String,
    },
    /// The cluster did not answer in time: unreachable, no quorum, or a TLS
    /// handshake that failed.
    #[error("etcd at {endpoints} is unavailable: {detail}")]
    Unavailable {
        /// The cluster's endpoints.
        endpoints: String,
        /// The last failure seen.
        detail: String,
    },
    /// Any other error etcd reported.
    #[error("etcd at {endpoints}: {detail}")]
    Etcd {
        /// The cluster's endpoints.
        endpoints: String,
        /// What etcd said.
        detail: String,
    },
    /// The session was closed, so no more calls can be made on it.
    #[error("the etcd session is closed")]
    Closed,
}
