//! The host side of the `locket` interface: each WIT function written once,
//! as a method of [`LocketCtxView`], and served to both linkers by thin
//! trait impls (one per bindgen run) that only pass calls through; and a
//! handle's acquires and release, with each backend's errors mapped to the
//! WIT `error` variant (here, not in `ctx.rs`, which the bindings import).

use std::time::{Duration, Instant};

use locket::Mode;
use wasmtime::component::Resource;

use crate::bindings::{WitError, to_async, wit, wit_async};
use crate::ctx::{DeadlineExceeded, Kind, LockHandle, LockStats, LocketCtxView};
use crate::grants::Target;
use crate::guest_path::PathError;

/// A guest's lock handle, as the WIT functions receive it.
type Handle = Resource<LockHandle>;
/// What a WIT function returns: a trap (`Err`), or the guest's result.
type Answer<T> = wasmtime::Result<Result<T, WitError>>;
/// The same for the async bindings, whose `error` is a copy of the type.
type AsyncAnswer<T> = wasmtime::Result<Result<T, wit_async::Error>>;

impl LocketCtxView<'_> {
    /// `lock-file`: resolves the guest path against the grants and makes a
    /// handle in the instance's group. Touches no file and makes no call to
    /// a cluster.
    fn open_lock(&mut self, path: String) -> Answer<Handle> {
        let target = match self.ctx.grants.resolve(&path) {
            Ok(target) => target,
            Err(e) => {
                tracing::debug!(?path, reason = e.reason(), "lock-file refused");
                return Ok(Err(match e {
                    PathError::OutsideGrants => WitError::AccessDenied,
                    e => WitError::InvalidPath(e.reason().to_owned()),
                }));
            }
        };
        tracing::debug!(?path, resolved = ?target, "lock-file");
        if self.ctx.live >= self.ctx.max_locks {
            return Ok(Err(WitError::Limit));
        }
        let lost = &self.ctx.lost;
        let handle = match target {
            Target::File(opener) => {
                LockHandle::file(self.ctx.group.lock_with_opener(path, opener), lost)
            }
            Target::Etcd { session, name } => match self.ctx.etcd_group.lock(&session, &name) {
                Ok(lock) => LockHandle::etcd(lock, lost),
                // The grant checked the name already; this is only a backstop.
                Err(e) => return Ok(Err(WitError::InvalidPath(e.to_string()))),
            },
        };
        let handle = self.table.push(handle)?;
        self.ctx.live += 1;
        self.ctx.stats.handles += 1;
        Ok(Ok(handle))
    }

    /// How long an acquire that asked for `timeout` may wait, and whether the
    /// run's deadline is what limits it.
    fn plan_wait(&self, timeout: Option<u64>) -> (Option<Duration>, bool) {
        let asked = timeout.map(Duration::from_nanos);
        match self.ctx.deadline {
            None => (asked, false),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                match asked {
                    Some(t) if t <= left => (Some(t), false),
                    _ => (Some(left), true),
                }
            }
        }
    }

    /// Counts an acquire's outcome and turns it into the guest's result.
    fn acquired(
        &mut self,
        started: Instant,
        result: Result<(), WitError>,
        limited_by_deadline: bool,
    ) -> Answer<()> {
        let stats = &mut self.ctx.stats;
        let waited = started.elapsed();
        stats.total_wait += waited;
        stats.max_wait = stats.max_wait.max(waited);
        match result {
            Ok(()) => {
                stats.acquired += 1;
                Ok(Ok(()))
            }
            Err(WitError::Timeout) if limited_by_deadline => {
                stats.timeouts += 1;
                Err(DeadlineExceeded.into())
            }
            Err(e) => {
                match e {
                    WitError::Timeout => stats.timeouts += 1,
                    _ => stats.errors += 1,
                }
                Ok(Err(e))
            }
        }
    }

    /// `acquire` and `acquire-shared`, waiting on this thread.
    fn acquire_here(&mut self, lock: Handle, mode: Mode, timeout: Option<u64>) -> Answer<()> {
        let (wait, limited_by_deadline) = self.plan_wait(timeout);
        let lock = self.table.get(&lock)?;
        let started = Instant::now();
        let result = lock.acquire(mode, wait);
        self.acquired(started, result, limited_by_deadline)
    }

    /// `acquire` and `acquire-shared` for the async linker: the wait runs on
    /// a helper thread, and dropping the future cancels it.
    async fn acquire_off_thread(
        &mut self,
        lock: Handle,
        mode: Mode,
        timeout: Option<u64>,
    ) -> Answer<()> {
        /// Counts the wait of an acquire whose future is dropped unfinished.
        struct Cancelled<'a> {
            stats: Option<&'a mut LockStats>,
            started: Instant,
        }
        impl Drop for Cancelled<'_> {
            fn drop(&mut self) {
                if let Some(stats) = self.stats.take() {
                    let waited = self.started.elapsed();
                    stats.cancelled += 1;
                    stats.total_wait += waited;
                    stats.max_wait = stats.max_wait.max(waited);
                }
            }
        }
        let (wait, limited_by_deadline) = self.plan_wait(timeout);
        let lock = self.table.get(&lock)?;
        let started = Instant::now();
        let mut cancelled = Cancelled {
            stats: Some(&mut self.ctx.stats),
            started,
        };
        let result = lock.acquire_async(mode, wait).await;
        cancelled.stats = None; // finished: counted below instead
        drop(cancelled);
        self.acquired(started, result, limited_by_deadline)
    }

    /// `release`.
    fn release_lock(&mut self, lock: Handle) -> Answer<()> {
        let released = self.table.get(&lock)?.release();
        if released.is_ok() {
            self.ctx.stats.releases += 1;
        }
        Ok(released)
    }

    /// `is-locked`.
    fn holds(&mut self, lock: Handle) -> wasmtime::Result<bool> {
        Ok(self.table.get(&lock)?.is_locked())
    }

    /// `token`.
    fn token_of(&mut self, lock: Handle) -> wasmtime::Result<Option<u64>> {
        Ok(self.table.get(&lock)?.token())
    }

    /// The resource's destructor: dropping the lock closes its file, or
    /// deletes its etcd key, which releases it.
    fn drop_lock(&mut self, lock: Handle) -> wasmtime::Result<()> {
        self.table.delete(lock)?;
        self.ctx.live = self.ctx.live.saturating_sub(1);
        Ok(())
    }
}

impl wit::Host for LocketCtxView<'_> {
    fn lock_file(&mut self, path: String) -> Answer<Handle> {
        self.open_lock(path)
    }
}

impl wit::HostLock for LocketCtxView<'_> {
    fn acquire(&mut self, lock: Handle, timeout: Option<u64>) -> Answer<()> {
        self.acquire_here(lock, Mode::Exclusive, timeout)
    }

    fn acquire_shared(&mut self, lock: Handle, timeout: Option<u64>) -> Answer<()> {
        self.acquire_here(lock, Mode::Shared, timeout)
    }

    fn release(&mut self, lock: Handle) -> Answer<()> {
        self.release_lock(lock)
    }

    fn is_locked(&mut self, lock: Handle) -> wasmtime::Result<bool> {
        self.holds(lock)
    }

    fn token(&mut self, lock: Handle) -> wasmtime::Result<Option<u64>> {
        self.token_of(lock)
    }

    fn drop(&mut self, lock: Handle) -> wasmtime::Result<()> {
        self.drop_lock(lock)
    }
}

/// Passes an answer on to the async bindings.
fn async_answer<T>(answer: Answer<T>) -> AsyncAnswer<T> {
    answer.map(|result| result.map_err(to_async))
}

impl wit_async::Host for LocketCtxView<'_> {
    fn lock_file(&mut self, path: String) -> AsyncAnswer<Handle> {
        async_answer(self.open_lock(path))
    }
}

impl wit_async::HostLock for LocketCtxView<'_> {
    async fn acquire(&mut self, lock: Handle, timeout: Option<u64>) -> AsyncAnswer<()> {
        async_answer(
            self.acquire_off_thread(lock, Mode::Exclusive, timeout)
                .await,
        )
    }

    async fn acquire_shared(&mut self, lock: Handle, timeout: Option<u64>) -> AsyncAnswer<()> {
        async_answer(self.acquire_off_thread(lock, Mode::Shared, timeout).await)
    }

    fn release(&mut self, lock: Handle) -> AsyncAnswer<()> {
        async_answer(self.release_lock(lock))
    }

    fn is_locked(&mut self, lock: Handle) -> wasmtime::Result<bool> {
        self.holds(lock)
    }

    fn token(&mut self, lock: Handle) -> wasmtime::Result<Option<u64>> {
        self.token_of(lock)
    }

    fn drop(&mut self, lock: Handle) -> wasmtime::Result<()> {
        self.drop_lock(lock)
    }
}

/// The acquires and the release of a handle, which answer in WIT errors.
impl LockHandle {
    /// Acquires in `mode`, waiting at most `wait`, on this thread.
    pub(crate) fn acquire(&self, mode: Mode, wait: Option<Duration>) -> Result<(), WitError> {
        self.notice_loss();
        let result = match &self.kind {
            Kind::File(lock) => lock.acquire_with(mode, wait).map_err(file_error),
            Kind::Etcd(lock) => lock.acquire_with(mode, wait).map_err(etcd_error),
        };
        self.acquired(result)
    }

    /// The same as a future; dropping it cancels the wait.
    pub(crate) async fn acquire_async(
        &self,
        mode: Mode,
        wait: Option<Duration>,
    ) -> Result<(), WitError> {
        self.notice_loss();
        let result = match &self.kind {
            Kind::File(lock) => lock
                .acquire_with_async(mode, wait)
                .await
                .map_err(file_error),
            Kind::Etcd(lock) => lock
                .acquire_with_async(mode, wait)
                .await
                .map_err(etcd_error),
        };
        self.acquired(result)
    }

    fn acquired(&self, result: Result<(), WitError>) -> Result<(), WitError> {
        if result.is_ok() {
            self.note_holding();
        }
        result
    }

    pub(crate) fn release(&self) -> Result<(), WitError> {
        self.notice_loss();
        let result = match &self.kind {
            Kind::File(lock) => lock.release().map_err(file_error),
            Kind::Etcd(lock) => lock.release().map_err(etcd_error),
        };
        // Whatever the outcome, what the handle holds now is what counts:
        // a release that failed to reach the cluster held nothing after it,
        // and that is no loss.
        self.note_holding();
        result
    }
}

/// Maps a file-lock error to the guest-visible WIT error. Messages name the
/// guest's path, never the host's.
fn file_error(e: locket::LockError) -> WitError {
    use locket::LockError;
    match e {
        LockError::Timeout { .. } => WitError::Timeout,
        LockError::NotLocked { .. } => WitError::NotLocked,
        LockError::AlreadyLocked { .. } | LockError::Deadlock { .. } => WitError::Deadlock,
        LockError::AccessDenied { .. } => WitError::AccessDenied,
        LockError::InvalidPath { reason, .. } => WitError::InvalidPath(reason.to_owned()),
        LockError::NotRegularFile { kind, .. } => {
            WitError::InvalidPath(format!("it is a {kind}, not a regular file"))
        }
        LockError::MissingParent { .. } => {
            WitError::Io("the lock file's parent directory does not exist".to_owned())
        }
        LockError::Io { source, .. } => WitError::Io(source.to_string()),
        other => WitError::Io(other.to_string()),
    }
}

/// Maps an etcd-lock error to the guest-visible WIT error. The guest learns
/// what failed, in fixed words: never the cluster's addresses or names
/// (which etcd's and TLS's messages may carry) or the host's credentials.
/// The whole message goes to the host's log.
fn etcd_error(e: locket_etcd::Error) -> WitError {
    use locket_etcd::Error;
    let io = |what: &str| {
        tracing::warn!("etcd lock: {e}");
        WitError::Io(format!("the etcd lock service {what}"))
    };
    match &e {
        Error::Timeout { .. } => WitError::Timeout,
        Error::NotLocked { .. } => WitError::NotLocked,
        Error::AlreadyLocked { .. } | Error::Deadlock { .. } => WitError::Deadlock,
        Error::InvalidName { reason, .. } => WitError::InvalidPath((*reason).to_owned()),
        Error::Unavailable { .. } => {
            io("is unavailable (unreachable, or without a quorum); the host's log has more")
        }
        Error::Auth { .. } => io("refused this host's credentials"),
        Error::Closed => io("session is closed"),
        _ => io("failed; the host's log has more"),
    }
}
