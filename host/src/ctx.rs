//! The per-store state of the `locket` interface: what one guest instance
//! may lock, what it holds, and what it has done. The methods that act on it
//! are in `host.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
/// the guest traps with [`DeadlineExceeded`].
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
    /// goes past it: when it would, the guest traps with [`DeadlineExceeded`].
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

/// The trap raised when a guest's deadline expires while it waits for a lock.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the run's time limit expired while the guest waited for a lock")]
pub struct DeadlineExceeded;

/// A guest's lock handle: the host side of the `lock` resource, on a file
/// or in an etcd cluster.
#[derive(Debug)]
pub struct LockHandle {
    pub(crate) kind: Kind,
    /// For an etcd lock: whether the guest's last acquire succeeded and it
    /// has not released since, so that a lock found not held was lost.
    holding: AtomicBool,
    /// The instance's count of lost locks.
    lost: Arc<AtomicU64>,
}

/// The backend of a handle.
#[derive(Debug)]
pub(crate) enum Kind {
    File(locket::Lock),
    Etcd(locket_etcd::Lock),
}

impl LockHandle {
    pub(crate) fn file(lock: locket::Lock, lost: &Arc<AtomicU64>) -> Self {
        Self::new(Kind::File(lock), lost)
    }

    pub(crate) fn etcd(lock: locket_etcd::Lock, lost: &Arc<AtomicU64>) -> Self {
        Self::new(Kind::Etcd(lock), lost)
    }

    fn new(kind: Kind, lost: &Arc<AtomicU64>) -> Self {
        Self {
            kind,
            holding: AtomicBool::new(false),
            lost: Arc::clone(lost),
        }
    }

    /// Counts an etcd lock that the guest held and that is no longer held
    /// although the guest never released it: lost with its lease. (A file
    /// lock cannot be lost, so file handles skip this on every call.)
    pub(crate) fn notice_loss(&self) {
        if let Kind::Etcd(lock) = &self.kind
            && self.holding.load(Ordering::Acquire)
            && !lock.is_locked()
            && self.holding.swap(false, Ordering::AcqRel)
        {
            self.lost.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                name = lock.name(),
                "the plugin's etcd lock was lost with its lease"
            );
        }
    }

    /// Notes what an acquire or release left this handle holding, for
    /// [`notice_loss`](Self::notice_loss): only etcd locks need it.
    pub(crate) fn note_holding(&self) {
        if let Kind::Etcd(lock) = &self.kind {
            self.holding.store(lock.is_locked(), Ordering::Release);
        }
    }

    pub(crate) fn is_locked(&self) -> bool {
        self.notice_loss();
        match &self.kind {
            Kind::File(lock) => lock.is_locked(),
            Kind::Etcd(lock) => lock.is_locked(),
        }
    }

    /// The fencing token of an etcd lock while it holds; `None` for a file
    /// lock, a handle that holds nothing, and a lost lock.
    pub(crate) fn token(&self) -> Option<u64> {
        self.notice_loss();
        match &self.kind {
            Kind::File(_) => None,
            Kind::Etcd(lock) => lock.token(),
        }
    }
}

impl Drop for LockHandle {
    fn drop(&mut self) {
        // Dropping the lock releases it: the file is closed, the etcd key
        // deleted in the background.
        self.notice_loss();
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
