//! [`LockHandle`]: the host side of the WIT `lock` resource, on a file or in
//! an etcd cluster. The backend is an enum, matched once per operation.
//!
//! An enum rather than a trait object: there are two backends, both known
//! here; their acquires differ in their types (`locket::Lock` and
//! `locket_etcd::Lock` each have their own error, and an async acquire whose
//! future a trait object could only hand out boxed); and only etcd locks
//! need the lost-lock bookkeeping, which lives in the etcd arm. A third
//! backend is one more arm in each method here and one in `open_lock`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use locket::Mode;

use crate::error::WitError;

/// A guest's lock handle: the host side of the `lock` resource.
#[derive(Debug)]
pub struct LockHandle {
    backend: Backend,
}

/// Where a handle's lock lives.
#[derive(Debug)]
enum Backend {
    File(locket::Lock),
    Etcd(EtcdHandle),
}

/// An etcd lock, and what it takes to notice that it was lost with its
/// lease: whether the guest's last acquire succeeded and it has not released
/// since, and the instance's count of lost locks. (A file lock cannot be
/// lost, so file handles do none of this.)
#[derive(Debug)]
struct EtcdHandle {
    lock: locket_etcd::Lock,
    holding: AtomicBool,
    lost: Arc<AtomicU64>,
}

impl EtcdHandle {
    /// Counts the lock if the guest held it and it is no longer held
    /// although the guest never released it: lost with its lease.
    fn notice_loss(&self) {
        if self.holding.load(Ordering::Acquire)
            && !self.lock.is_locked()
            && self.holding.swap(false, Ordering::AcqRel)
        {
            self.lost.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                name = self.lock.name(),
                "the plugin's etcd lock was lost with its lease"
            );
        }
    }

    /// Notes what an acquire or release left the handle holding.
    fn note_holding(&self) {
        self.holding.store(self.lock.is_locked(), Ordering::Release);
    }

    /// Notes a successful acquire, and passes the outcome on.
    fn acquired(&self, result: Result<(), locket_etcd::Error>) -> Result<(), WitError> {
        if result.is_ok() {
            self.note_holding();
        }
        Ok(result?)
    }
}

impl LockHandle {
    /// A handle on a file lock.
    pub(crate) fn file(lock: locket::Lock) -> Self {
        Self {
            backend: Backend::File(lock),
        }
    }

    /// A handle on an etcd lock, whose loss is counted in `lost`.
    pub(crate) fn etcd(lock: locket_etcd::Lock, lost: &Arc<AtomicU64>) -> Self {
        Self {
            backend: Backend::Etcd(EtcdHandle {
                lock,
                holding: AtomicBool::new(false),
                lost: Arc::clone(lost),
            }),
        }
    }

    /// Acquires in `mode`, waiting at most `wait`, on this thread.
    pub(crate) fn acquire(&self, mode: Mode, wait: Option<Duration>) -> Result<(), WitError> {
        match &self.backend {
            Backend::File(lock) => Ok(lock.acquire_with(mode, wait)?),
            Backend::Etcd(etcd) => {
                etcd.notice_loss();
                etcd.acquired(etcd.lock.acquire_with(mode, wait))
            }
        }
    }

    /// The same as a future; dropping it cancels the wait.
    pub(crate) async fn acquire_async(
        &self,
        mode: Mode,
        wait: Option<Duration>,
    ) -> Result<(), WitError> {
        match &self.backend {
            Backend::File(lock) => Ok(lock.acquire_with_async(mode, wait).await?),
            Backend::Etcd(etcd) => {
                etcd.notice_loss();
                etcd.acquired(etcd.lock.acquire_with_async(mode, wait).await)
            }
        }
    }

    /// Releases what the handle holds.
    pub(crate) fn release(&self) -> Result<(), WitError> {
        match &self.backend {
            Backend::File(lock) => Ok(lock.release()?),
            Backend::Etcd(etcd) => {
                etcd.notice_loss();
                let result = etcd.lock.release();
                // Whatever the outcome, what the handle holds now is what
                // counts: a release that failed to reach the cluster held
                // nothing after it, and that is no loss.
                etcd.note_holding();
                Ok(result?)
            }
        }
    }

    /// Whether the handle holds its lock.
    pub(crate) fn is_locked(&self) -> bool {
        match &self.backend {
            Backend::File(lock) => lock.is_locked(),
            Backend::Etcd(etcd) => {
                etcd.notice_loss();
                etcd.lock.is_locked()
            }
        }
    }

    /// The fencing token of an etcd lock while it holds; `None` for a file
    /// lock, a handle that holds nothing, and a lost lock.
    pub(crate) fn token(&self) -> Option<u64> {
        match &self.backend {
            Backend::File(_) => None,
            Backend::Etcd(etcd) => {
                etcd.notice_loss();
                etcd.lock.token()
            }
        }
    }
}

impl Drop for LockHandle {
    fn drop(&mut self) {
        // Dropping the lock releases it: the file is closed, the etcd key
        // deleted in the background. A lock lost before that is counted.
        if let Backend::Etcd(etcd) = &self.backend {
            etcd.notice_loss();
        }
    }
}
