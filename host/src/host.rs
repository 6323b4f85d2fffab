//! The host side of the `locket` interface: each WIT function written once,
//! as a method of [`LocketCtxView`], and served to each linker by a thin
//! trait impl (one per bindgen run) that only passes calls through. What
//! every run generates alike is written once, in macros: the `Host` trait
//! (`lock-file` and the run's `convert_error`, [`host_impl!`]) and the
//! `lock` methods but the acquires ([`pass_through!`]); a run's `HostLock`
//! impl writes out only how its acquires wait.

use std::time::{Duration, Instant};

use locket::Mode;
use wasmtime::component::Resource;

use crate::bindings::{wit, wit_async, wit_error};
use crate::ctx::{LockStats, LocketCtxView};
use crate::error::{DeadlineExceeded, Failure, WitError};
use crate::grants::Target;
use crate::guest_path::PathError;
use crate::handle::LockHandle;

/// A guest's lock handle, as the WIT functions receive it.
type Handle = Resource<LockHandle>;

impl LocketCtxView<'_> {
    /// `lock-file`: resolves the guest path against the grants and makes a
    /// handle in the instance's group. Touches no file and makes no call to
    /// a cluster.
    fn open_lock(&mut self, path: String) -> Result<Handle, Failure> {
        let target = self.ctx.grants.resolve(&path).map_err(|e| {
            tracing::debug!(?path, reason = e.reason(), "lock-file refused");
            match e {
                PathError::OutsideGrants => WitError::AccessDenied,
                e => WitError::InvalidPath(e.reason().to_owned()),
            }
        })?;
        tracing::debug!(?path, resolved = ?target, "lock-file");
        if self.ctx.live >= self.ctx.max_locks {
            return Err(WitError::Limit.into());
        }
        let handle = match target {
            Target::File(opener) => LockHandle::file(self.ctx.group.lock_with_opener(path, opener)),
            Target::Etcd { session, name } => {
                // The grant checked the name already; this is only a backstop.
                let lock = self
                    .ctx
                    .etcd_group
                    .lock(&session, &name)
                    .map_err(|e| WitError::InvalidPath(e.to_string()))?;
                LockHandle::etcd(lock, &self.ctx.lost)
            }
        };
        let handle = self.table.push(handle)?;
        self.ctx.live += 1;
        self.ctx.stats.handles += 1;
        Ok(handle)
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
    ) -> Result<(), Failure> {
        let stats = &mut self.ctx.stats;
        let waited = started.elapsed();
        stats.total_wait += waited;
        stats.max_wait = stats.max_wait.max(waited);
        match result {
            Ok(()) => {
                stats.acquired += 1;
                Ok(())
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
                Err(e.into())
            }
        }
    }

    /// `acquire` and `acquire-shared`, waiting on this thread.
    fn acquire_here(
        &mut self,
        lock: Handle,
        mode: Mode,
        timeout: Option<u64>,
    ) -> Result<(), Failure> {
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
    ) -> Result<(), Failure> {
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
    fn release_lock(&mut self, lock: Handle) -> Result<(), Failure> {
        self.table.get(&lock)?.release()?;
        self.ctx.stats.releases += 1;
        Ok(())
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

/// The `lock` methods that every bindgen run generates alike, passed
/// through to the [`LocketCtxView`] methods above.
macro_rules! pass_through {
    () => {
        fn release(&mut self, lock: Handle) -> Result<(), Failure> {
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
    };
}

/// The interface's `Host` trait as bindgen run `$wit` (the interface module
/// it generated) declares it: `lock-file`, and that run's `convert_error`.
macro_rules! host_impl {
    ($wit:ident) => {
        impl $wit::Host for LocketCtxView<'_> {
            fn lock_file(&mut self, path: String) -> Result<Handle, Failure> {
                self.open_lock(path)
            }

            fn convert_error(&mut self, failure: Failure) -> wasmtime::Result<$wit::Error> {
                use $wit::Error;
                wit_error!(failure, Error)
            }
        }
    };
}

host_impl!(wit);
host_impl!(wit_async);

impl wit::HostLock for LocketCtxView<'_> {
    fn acquire(&mut self, lock: Handle, timeout: Option<u64>) -> Result<(), Failure> {
        self.acquire_here(lock, Mode::Exclusive, timeout)
    }

    fn acquire_shared(&mut self, lock: Handle, timeout: Option<u64>) -> Result<(), Failure> {
        self.acquire_here(lock, Mode::Shared, timeout)
    }

    pass_through!();
}

impl wit_async::HostLock for LocketCtxView<'_> {
    async fn acquire(&mut self, lock: Handle, timeout: Option<u64>) -> Result<(), Failure> {
        self.acquire_off_thread(lock, Mode::Exclusive, timeout)
            .await
    }

    async fn acquire_shared(&mut self, lock: Handle, timeout: Option<u64>) -> Result<(), Failure> {
        self.acquire_off_thread(lock, Mode::Shared, timeout).await
    }

    pass_through!();
}
