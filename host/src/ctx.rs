//! The per-store state of the `locket` interface: what one guest instance
//! may lock, what it holds, and what it has done. The methods that act on it
//! are in `host.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use locket::LockGroup;
use wasmtime::component::ResourceTable;

use crate::grants::Grants;

/// The default cap on lock handles per instance (`--max-locks`).
pub const DEFAULT_MAX_LOCKS: usize = 1024;

/// The `locket` state of one store (one guest instance).
///
/// It holds the grants the guest may lock under, the instance's lock group
/// (for self-deadlock detection), its handle cap and, optionally, a deadline
/// after which every wait ends and the guest traps with [`DeadlineExceeded`].
#[derive(Debug)]
pub struct LocketCtx {
    pub(crate) grants: Arc<Grants>,
    pub(crate) group: LockGroup,
    pub(crate) max_locks: usize,
    pub(crate) live: usize,
    pub(crate) deadline: Option<Instant>,
    pub(crate) stats: LockStats,
}

/// What one guest did with locks, for `locket-host run --stats`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LockStats {
    /// Lock handles made (`lock-file` calls that succeeded).
    pub handles: u64,
    /// Acquires that succeeded.
    pub acquired: u64,
    /// Acquires that timed out.
    pub timeouts: u64,
    /// Acquires that failed otherwise (deadlock, access-denied, ...).
    pub errors: u64,
    /// Releases that succeeded.
    pub releases: u64,
    /// Async acquires cancelled while they waited (their future was dropped).
    pub cancelled: u64,
    /// Time spent in acquires, in all.
    pub total_wait: Duration,
    /// The longest single acquire.
    pub max_wait: Duration,
}

impl LocketCtx {
    /// State for a guest that may lock files under `grants`, with at most
    /// [`DEFAULT_MAX_LOCKS`] handles and no deadline.
    #[must_use]
    pub fn new(grants: Arc<Grants>) -> Self {
        Self {
            grants,
            group: LockGroup::new(),
            max_locks: DEFAULT_MAX_LOCKS,
            live: 0,
            deadline: None,
            stats: LockStats::default(),
        }
    }

    /// Caps the number of lock handles the guest may have at once; the next
    /// `lock-file` fails with `limit`.
    #[must_use]
    pub fn with_max_locks(mut self, max_locks: usize) -> Self {
        self.max_locks = max_locks;
        self
    }

    /// Sets the time by which the guest must be done. A wait for a lock never
    /// goes past it: when it would, the guest traps with [`DeadlineExceeded`].
    #[must_use]
    pub fn with_deadline(mut self, deadline: Option<Instant>) -> Self {
        self.deadline = deadline;
        self
    }

    /// What the guest has done with locks so far.
    #[must_use]
    pub fn stats(&self) -> LockStats {
        self.stats
    }

    /// How many lock handles the guest has now.
    #[must_use]
    pub fn live_handles(&self) -> usize {
        self.live
    }
}

/// The trap raised when a guest's deadline expires while it waits for a lock.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the run's time limit expired while the guest waited for a lock")]
pub struct DeadlineExceeded;

/// A guest's lock handle: the host side of the `lock` resource.
#[derive(Debug)]
pub struct LockHandle {
    pub(crate) lock: locket::Lock,
}

/// A borrowed view of a store's `locket` state and its resource table.
pub struct LocketCtxView<'a> {
    /// The `locket` state.
    pub ctx: &'a mut LocketCtx,
    /// The store's resource table, where lock handles live.
    pub table: &'a mut ResourceTable,
}

/// Implemented by a store's data to give the `locket` host its state.
pub trait LocketView: Send {
    /// The `locket` state and resource table of this store.
    fn locket(&mut self) -> LocketCtxView<'_>;
}
