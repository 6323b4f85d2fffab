//! [`LockGroup`]: handles that share one single-threaded owner.

use std::path::PathBuf;
use std::sync::Arc;

use crate::holds::Holds;
use crate::lock::Lock;
use crate::open::Opener;

/// Lock handles that share one single-threaded owner, for self-deadlock detection.
///
/// A plain handle that finds its file held waits, because another thread may
/// release it. An owner that is single-threaded, such as a WebAssembly guest
/// instance, can never release while it waits, so such a wait would hang
/// forever. Handles made with [`LockGroup::lock_file`] know what the group
/// holds, and an acquire that conflicts with a lock the group already holds on
/// the same file, through any of its handles, fails at once with
/// [`LockError::Deadlock`](crate::LockError::Deadlock) instead.
///
/// Cloning a `LockGroup` gives another reference to the same group.
#[derive(Debug, Clone, Default)]
pub struct LockGroup {
    holds: Arc<Holds>,
}

impl LockGroup {
    /// A new group that holds nothing.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Names a lock on the file at `path`, as [`lock_file`](crate::lock_file)
    /// does, for a handle that belongs to this group.
    pub fn lock_file(&self, path: impl Into<PathBuf>) -> Lock {
        Lock::at_path(path.into(), Some(Arc::clone(&self.holds)))
    }

    /// Names a lock whose file `opener` opens, as
    /// [`Lock::with_opener`] does, for a handle that belongs to this group.
    pub fn lock_with_opener(&self, name: impl Into<PathBuf>, opener: impl Opener) -> Lock {
        Lock::from_parts(name.into(), Box::new(opener), Some(Arc::clone(&self.holds)))
    }
}
