//! The host's errors, each mapped once: a backend's error becomes a
//! [`WitError`] (`From`), and what a WIT function ends in when it does not
//! succeed is a [`Failure`]: the guest's error, or a trap. Each bindgen run
//! turns a `Failure` into its own copy of the WIT `error` variant in one
//! place, its `convert_error` (`bindings.rs`).

use wasmtime::component::ResourceTableError;

/// Why a lock operation failed, as the guest is told: one case for each case
/// of the WIT `error` variant of `locket:lock/locket`. A guest sees one of
/// these; a bug in the host traps instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WitError {
    /// Not acquired within the timeout.
    #[error("timeout")]
    Timeout,
    /// Released while holding nothing.
    #[error("not-locked")]
    NotLocked,
    /// The wait could only end by a hold of this same instance.
    #[error("deadlock")]
    Deadlock,
    /// Outside every grant, or the grant does not allow it.
    #[error("access-denied")]
    AccessDenied,
    /// Not a usable lock path or name, and why.
    #[error("invalid-path: {0}")]
    InvalidPath(String),
    /// The instance has as many lock handles as it may.
    #[error("limit")]
    Limit,
    /// The system or the lock service failed, in words that name no host
    /// path, address or credential.
    #[error("io: {0}")]
    Io(String),
}

/// Maps a file-lock error to what the guest is told. Messages name the
/// guest's path, never the host's.
impl From<locket::LockError> for WitError {
    fn from(e: locket::LockError) -> Self {
        use locket::LockError;
        match e {
            LockError::Timeout { .. } => Self::Timeout,
            LockError::NotLocked { .. } => Self::NotLocked,
            LockError::AlreadyLocked { .. } | LockError::Deadlock { .. } => Self::Deadlock,
            LockError::AccessDenied { .. } => Self::AccessDenied,
            LockError::InvalidPath { reason, .. } => Self::InvalidPath(reason.to_owned()),
            LockError::NotRegularFile { kind, .. } => {
                Self::InvalidPath(format!("it is a {kind}, not a regular file"))
            }
            LockError::MissingParent { .. } => {
                Self::Io("the lock file's parent directory does not exist".to_owned())
            }
            LockError::Io { source, .. } => Self::Io(source.to_string()),
            other => Self::Io(other.to_string()),
        }
    }
}

/// Maps an etcd-lock error to what the guest is told: what failed, in fixed
/// words, never the cluster's addresses or names (which etcd's and TLS's
/// messages may carry) or the host's credentials. The whole message goes to
/// the host's log.
impl From<locket_etcd::Error> for WitError {
    fn from(e: locket_etcd::Error) -> Self {
        use locket_etcd::Error;
        let io = |what: &str| {
            tracing::warn!("etcd lock: {e}");
            Self::Io(format!("the etcd lock service {what}"))
        };
        match &e {
            Error::Timeout { .. } => Self::Timeout,
            Error::NotLocked { .. } => Self::NotLocked,
            Error::AlreadyLocked { .. } | Error::Deadlock { .. } => Self::Deadlock,
            Error::InvalidName { reason, .. } => Self::InvalidPath((*reason).to_owned()),
            Error::Unavailable { .. } => {
                io("is unavailable (unreachable, or without a quorum); the host's log has more")
            }
            Error::Auth { .. } => io("refused this host's credentials"),
            Error::Closed => io("session is closed"),
            _ => io("failed; the host's log has more"),
        }
    }
}

/// The trap raised when a guest's deadline expires while it waits for a lock.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the run's time limit expired while the guest waited for a lock")]
pub struct DeadlineExceeded;

/// What a WIT function that can fail ends in when it does not succeed: the
/// guest's error, or a trap (a host bug, a bad handle, the run's deadline).
#[derive(Debug)]
pub(crate) enum Failure {
    /// The guest gets this error.
    Guest(WitError),
    /// The guest traps with this.
    Trap(wasmtime::Error),
}

impl From<WitError> for Failure {
    fn from(e: WitError) -> Self {
        Self::Guest(e)
    }
}

impl From<DeadlineExceeded> for Failure {
    fn from(e: DeadlineExceeded) -> Self {
        Self::Trap(e.into())
    }
}

/// A handle the guest does not own, or a full table: a trap.
impl From<ResourceTableError> for Failure {
    fn from(e: ResourceTableError) -> Self {
        Self::Trap(e.into())
    }
}
