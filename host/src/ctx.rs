//! The per-store state of the `locket` interface and its host implementation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use locket::{LockError, LockGroup, Mode};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::generated::locket::lock::locket::{self as wit, Error};
use crate::generated_async::locket::lock::locket::{self as wit_async, Error as AsyncError};
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
    grants: Arc<Grants>,
    group: LockGroup,
    max_locks: usize,
    live: usize,
    deadline: Option<Instant>,
    stats: LockStats,
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
    lock: locket::Lock,
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

struct HasLocket;

impl HasData for HasLocket {
    type Data<'a> = LocketCtxView<'a>;
}

/// Adds the `locket:lock/locket` interface to `linker`, for stores whose data
/// implements [`LocketView`].
///
/// # Errors
///
/// If the linker already defines the interface.
pub fn add_to_linker<T: LocketView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasLocket>(linker, T::locket)
}

/// Adds the `locket:lock/locket` interface to `linker` for an engine with
/// async support, so that a guest waiting for a lock does not block the
/// executor thread.
///
/// `acquire` and `acquire-shared` become async host functions that wait
/// through [`locket::Lock::acquire_with_async`]: many instances can wait at
/// once on a small runtime. Use it with `wasmtime_wasi::p2::add_to_linker_async`
/// and `instantiate_async`.
///
/// Cancelling a waiting guest (dropping the future of its call, for example
/// with `tokio::time::timeout` or by aborting its task) cancels the wait; the
/// lock is never left held by it. Dropping the store then releases whatever
/// the guest still holds. A guest running wasm code is stopped the usual way,
/// with epoch interruption or fuel.
///
/// # Errors
///
/// If the linker already defines the interface.
pub fn add_to_linker_async<T: LocketView + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    wit_async::add_to_linker::<T, HasLocket>(linker, T::locket)
}

impl LocketCtxView<'_> {
    fn lock_file(&mut self, path: String) -> wasmtime::Result<Result<Resource<LockHandle>, Error>> {
        let opener = match self.ctx.grants.resolve(&path) {
            Ok(opener) => opener,
            Err(e) => {
                tracing::debug!(?path, reason = e.reason(), "lock-file refused");
                return Ok(Err(match e {
                    crate::grants::PathError::OutsideGrants => Error::AccessDenied,
                    e => Error::InvalidPath(e.reason().to_owned()),
                }));
            }
        };
        tracing::debug!(?path, resolved = ?opener, "lock-file");
        if self.ctx.live >= self.ctx.max_locks {
            return Ok(Err(Error::Limit));
        }
        let lock = self.ctx.group.lock_with_opener(path, opener);
        let handle = self.table.push(LockHandle { lock })?;
        self.ctx.live += 1;
        self.ctx.stats.handles += 1;
        Ok(Ok(handle))
    }

    /// How long an acquire that asked for `timeout` may wait, and whether the
    /// deadline is what limits it.
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
        result: Result<(), LockError>,
        limited_by_deadline: bool,
    ) -> wasmtime::Result<Result<(), Error>> {
        let stats = &mut self.ctx.stats;
        let waited = started.elapsed();
        stats.total_wait += waited;
        stats.max_wait = stats.max_wait.max(waited);
        match result {
            Ok(()) => {
                stats.acquired += 1;
                Ok(Ok(()))
            }
            Err(LockError::Timeout { .. }) if limited_by_deadline => {
                stats.timeouts += 1;
                Err(DeadlineExceeded.into())
            }
            Err(e) => {
                match e {
                    LockError::Timeout { .. } => stats.timeouts += 1,
                    _ => stats.errors += 1,
                }
                Ok(Err(to_wit(e)))
            }
        }
    }

    fn acquire(
        &mut self,
        handle: Resource<LockHandle>,
        mode: Mode,
        timeout: Option<u64>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let (wait, limited_by_deadline) = self.plan_wait(timeout);
        let lock = &self.table.get(&handle)?.lock;
        let started = Instant::now();
        let result = lock.acquire_with(mode, wait);
        self.acquired(started, result, limited_by_deadline)
    }

    async fn acquire_async(
        &mut self,
        handle: Resource<LockHandle>,
        mode: Mode,
        timeout: Option<u64>,
    ) -> wasmtime::Result<Result<(), Error>> {
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
        let lock = &self.table.get(&handle)?.lock;
        let started = Instant::now();
        let mut cancelled = Cancelled {
            stats: Some(&mut self.ctx.stats),
            started,
        };
        let result = lock.acquire_with_async(mode, wait).await;
        cancelled.stats = None; // finished: counted below instead
        drop(cancelled);
        self.acquired(started, result, limited_by_deadline)
    }

    fn release(&mut self, handle: Resource<LockHandle>) -> wasmtime::Result<Result<(), Error>> {
        let lock = &self.table.get(&handle)?.lock;
        let released = lock.release();
        if released.is_ok() {
            self.ctx.stats.releases += 1;
        }
        Ok(released.map_err(to_wit))
    }

    fn is_locked(&mut self, handle: Resource<LockHandle>) -> wasmtime::Result<bool> {
        Ok(self.table.get(&handle)?.lock.is_locked())
    }

    fn drop_handle(&mut self, handle: Resource<LockHandle>) -> wasmtime::Result<()> {
        // Dropping the lock closes its file, which releases it.
        self.table.delete(handle)?;
        self.ctx.live = self.ctx.live.saturating_sub(1);
        Ok(())
    }
}

impl wit::Host for LocketCtxView<'_> {
    fn lock_file(&mut self, path: String) -> wasmtime::Result<Result<Resource<LockHandle>, Error>> {
        LocketCtxView::lock_file(self, path)
    }
}

impl wit::HostLock for LocketCtxView<'_> {
    fn acquire(
        &mut self,
        handle: Resource<LockHandle>,
        timeout: Option<u64>,
    ) -> wasmtime::Result<Result<(), Error>> {
        LocketCtxView::acquire(self, handle, Mode::Exclusive, timeout)
    }

    fn acquire_shared(
        &mut self,
        handle: Resource<LockHandle>,
        timeout: Option<u64>,
    ) -> wasmtime::Result<Result<(), Error>> {
        LocketCtxView::acquire(self, handle, Mode::Shared, timeout)
    }

    fn release(&mut self, handle: Resource<LockHandle>) -> wasmtime::Result<Result<(), Error>> {
        LocketCtxView::release(self, handle)
    }

    fn is_locked(&mut self, handle: Resource<LockHandle>) -> wasmtime::Result<bool> {
        LocketCtxView::is_locked(self, handle)
    }

    fn drop(&mut self, handle: Resource<LockHandle>) -> wasmtime::Result<()> {
        self.drop_handle(handle)
    }
}

impl wit_async::Host for LocketCtxView<'_> {
    fn lock_file(
        &mut self,
        path: String,
    ) -> wasmtime::Result<Result<Resource<LockHandle>, AsyncError>> {
        LocketCtxView::lock_file(self, path).map(|r| r.map_err(AsyncError::from))
    }
}

impl wit_async::HostLock for LocketCtxView<'_> {
    async fn acquire(
        &mut self,
        handle: Resource<LockHandle>,
        timeout: Option<u64>,
    ) -> wasmtime::Result<Result<(), AsyncError>> {
        let outcome = self.acquire_async(handle, Mode::Exclusive, timeout).await;
        outcome.map(|r| r.map_err(AsyncError::from))
    }

    async fn acquire_shared(
        &mut self,
        handle: Resource<LockHandle>,
        timeout: Option<u64>,
    ) -> wasmtime::Result<Result<(), AsyncError>> {
        let outcome = self.acquire_async(handle, Mode::Shared, timeout).await;
        outcome.map(|r| r.map_err(AsyncError::from))
    }

    fn release(
        &mut self,
        handle: Resource<LockHandle>,
    ) -> wasmtime::Result<Result<(), AsyncError>> {
        LocketCtxView::release(self, handle).map(|r| r.map_err(AsyncError::from))
    }

    fn is_locked(&mut self, handle: Resource<LockHandle>) -> wasmtime::Result<bool> {
        LocketCtxView::is_locked(self, handle)
    }

    fn drop(&mut self, handle: Resource<LockHandle>) -> wasmtime::Result<()> {
        self.drop_handle(handle)
    }
}

/// The two bindings generate one error type each; they are the same WIT type.
impl From<Error> for AsyncError {
    fn from(e: Error) -> Self {
        match e {
            Error::Timeout => AsyncError::Timeout,
            Error::NotLocked => AsyncError::NotLocked,
            Error::Deadlock => AsyncError::Deadlock,
            Error::AccessDenied => AsyncError::AccessDenied,
            Error::InvalidPath(reason) => AsyncError::InvalidPath(reason),
            Error::Limit => AsyncError::Limit,
            Error::Io(message) => AsyncError::Io(message),
        }
    }
}

/// Maps a `locket` error to the guest-visible WIT error. Messages name the
/// guest's path, never the host's.
fn to_wit(e: LockError) -> Error {
    match e {
        LockError::Timeout { .. } => Error::Timeout,
        LockError::NotLocked { .. } => Error::NotLocked,
        LockError::AlreadyLocked { .. } | LockError::Deadlock { .. } => Error::Deadlock,
        LockError::AccessDenied { .. } => Error::AccessDenied,
        LockError::InvalidPath { reason, .. } => Error::InvalidPath(reason.to_owned()),
        LockError::NotRegularFile { kind, .. } => {
            Error::InvalidPath(format!("it is a {kind}, not a regular file"))
        }
        LockError::MissingParent { .. } => {
            Error::Io("the lock file's parent directory does not exist".to_owned())
        }
        LockError::Io { source, .. } => Error::Io(source.to_string()),
        other => Error::Io(other.to_string()),
    }
}
