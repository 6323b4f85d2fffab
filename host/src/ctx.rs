//! The per-store state of the `locket` interface: what one guest instance
//! may lock, what it holds, and what it has done. The methods that act on it
//! are in `host.rs`; a lock handle is in `handle.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use locket::LockGroup;
use wasmtime::component::ResourceTable;

use crate::grants::Grants;

/// The default cap on lock handles per instance (`--max-locks`).
pub const DEFAULT_MAX_LOCKS: usize = 1024;

/// The `locket` state of one store (one guest instance).
///
/// It holds the grants the guest may lock under, the instance's lock groups
/// (for self-deadlock detection: one for files, one for etcd locks), its
/// handle cap and, optionally, a deadline after which every wait ends and
/// the guest traps with [`DeadlineExceeded`](crate::DeadlineExceeded).
#[derive(Debug)]
pub struct LocketCtx {
    pub(crate) grants: Arc<Grants>,
    pub(crate) group: LockGroup,
    pub(crate) etcd_group: locket_etcd::LockGroup,
    /// Locks this instance held and lost with their etcd lease.
    pub(crate) lost: Arc<AtomicU64>,
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
    /// Locks the guest held that were lost with their etcd lease (the host
    /// was cut off from the cluster, or paused, past the lease's TTL).
    /// Always 0 for file locks.
    pub lost: u64,
}

impl LocketCtx {
    /// State for a guest that may lock files under `grants`, with at most
    /// [`DEFAULT_MAX_LOCKS`] handles and no deadline.
    #[must_use]
    pub fn new(grants: Arc<Grants>) -> Self {
        Self {
            grants,
            group: LockGroup::new(),
            etcd_group: locket_etcd::LockGroup::new(),
            lost: Arc::new(AtomicU64::new(0)),
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
    /// goes past it: when it would, the guest traps with
    /// [`DeadlineExceeded`](crate::DeadlineExceeded).
    #[must_use]
    pub fn with_deadline(mut self, deadline: Option<Instant>) -> Self {
        self.deadline = deadline;
        self
    }

    /// What the guest has done with locks so far.
    #[must_use]
    pub fn stats(&self) -> LockStats {
        LockStats {
            lost: self.lost.load(Ordering::Relaxed),
            ..self.stats
        }
    }

    /// How many lock handles the guest has now.
    #[must_use]
    pub fn live_handles(&self) -> usize {
        self.live
    }
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
