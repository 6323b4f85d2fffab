use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::future::Acquire;
use crate::open::{OpenError, Opener, PathOpener};
use crate::sys::{self, Cancel};
use crate::{FileId, LockError, LockGroup, LockGuard, Mode};

/// A handle on the lock of one file: locket.py's `lock_file(path)` object.
///
/// Made by [`lock_file`](crate::lock_file) or [`LockGroup::lock_file`]. The
/// handle owns what it acquires: only it can release, but any thread may call
/// it, since it is `Send + Sync`. Dropping the handle releases its lock.
///
/// The file stays open between acquires. Each acquire checks, once it has the
/// OS lock, that the path still names the file it locked; if another program
/// deleted or replaced the lock file meanwhile, the handle reopens the path and
/// locks the new file, so it never holds a lock nobody else can see.
pub struct Lock {
    timeout: Option<Duration>,
    core: Arc<Core>,
}

/// What a handle locks and holds. Shared (`Arc`) with the thread that waits
/// for an async acquire, so that the wait never outlives what it uses.
pub(crate) struct Core {
    path: PathBuf,
    opener: Box<dyn Opener>,
    group: Option<LockGroup>,
    /// Whether acquires check that the path still names the locked file.
    check_replacement: AtomicBool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The open lock file, once the first acquire opened it. Taken out while an
    /// acquire waits, so that the state is not locked during the wait.
    file: Option<Opened>,
    /// The mode this handle holds, if any.
    held: Option<Mode>,
    /// An acquire is in progress on this handle.
    acquiring: bool,
    /// Counts successful acquires, so that a guard releases only the hold it
    /// was made for, never a later one of the same handle.
    generation: u64,
}

struct Opened {
    file: File,
    id: FileId,
}

/// How long one acquire may wait.
#[derive(Clone, Copy)]
pub(crate) enum Wait {
    Once,
    Forever,
    Until(Instant),
}

impl Wait {
    /// The wait a timeout asks for, counted from `start`.
    pub(crate) fn new(timeout: Option<Duration>, start: Instant) -> Self {
        match timeout {
            None => Wait::Forever,
            Some(t) if t.is_zero() => Wait::Once,
            Some(t) => start.checked_add(t).map_or(Wait::Forever, Wait::Until),
        }
    }
}

impl Lock {
    pub(crate) fn new(path: PathBuf, group: Option<LockGroup>) -> Self {
        let opener = Box::new(PathOpener(path.clone()));
        Self::from_parts(path, opener, group)
    }

    pub(crate) fn from_parts(
        path: PathBuf,
        opener: Box<dyn Opener>,
        group: Option<LockGroup>,
    ) -> Self {
        Self {
            timeout: None,
            core: Arc::new(Core {
                path,
                opener,
                group,
                check_replacement: AtomicBool::new(true),
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Names a lock whose file `opener` opens, for a handle outside any group.
    ///
    /// `name` is how errors and [`path`](Self::path) refer to the lock; it is
    /// not opened. Like [`lock_file`](crate::lock_file), this touches nothing:
    /// the opener is first called by the first acquire.
    pub fn with_opener(name: impl Into<PathBuf>, opener: impl Opener) -> Self {
        Self::from_parts(name.into(), Box::new(opener), None)
    }

    /// Sets the timeout that [`acquire`](Self::acquire),
    /// [`acquire_shared`](Self::acquire_shared), [`lock`](Self::lock) and
    /// [`lock_shared`](Self::lock_shared) use: `None` waits forever, a zero
    /// duration tries once, `Some(d)` waits at most `d`.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Turns the replaced-file check on (the default) or off.
    ///
    /// With it on, each acquire makes sure, once it has the lock, that the
    /// path still names the file it locked, and re-opens the path if another
    /// program deleted or replaced the lock file meanwhile. That costs one
    /// `stat` of the path per acquire (about 1.1 µs here; see the benchmark).
    /// Turn it off only where nothing deletes or replaces lock files while
    /// they are in use, which is what locket.py and `flock(1)` assume: a
    /// handle would then go on locking a file that nobody else can see.
    #[must_use]
    pub fn with_replacement_check(self, check: bool) -> Self {
        self.core.check_replacement.store(check, Ordering::Relaxed);
        self
    }

    /// The handle's timeout, as set by [`with_timeout`](Self::with_timeout).
    #[must_use]
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The path of the lock file, as given (or the name given with an opener).
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.core.path
    }

    /// Whether this handle holds the lock now.
    #[must_use]
    pub fn is_locked(&self) -> bool {
        self.core.state().held.is_some()
    }

    /// The mode this handle holds the lock in, if it holds it.
    #[must_use]
    pub fn mode(&self) -> Option<Mode> {
        self.core.state().held
    }

    /// Acquires the lock exclusively, waiting at most the handle's timeout.
    ///
    /// # Errors
    ///
    /// See [`acquire_with`](Self::acquire_with).
    pub fn acquire(&self) -> Result<(), LockError> {
        self.acquire_with(Mode::Exclusive, self.timeout)
    }

    /// Acquires a shared lock, waiting at most the handle's timeout. Shared
    /// holders exclude exclusive ones but not each other.
    ///
    /// # Errors
    ///
    /// See [`acquire_with`](Self::acquire_with).
    pub fn acquire_shared(&self) -> Result<(), LockError> {
        self.acquire_with(Mode::Shared, self.timeout)
    }

    /// Acquires the lock exclusively and returns a guard that releases it on drop.
    ///
    /// # Errors
    ///
    /// See [`acquire_with`](Self::acquire_with).
    pub fn lock(&self) -> Result<LockGuard<'_>, LockError> {
        let generation = self.acquire_generation(Mode::Exclusive, self.timeout)?;
        Ok(LockGuard::new(self, Mode::Exclusive, generation))
    }

    /// Acquires a shared lock and returns a guard that releases it on drop.
    ///
    /// # Errors
    ///
    /// See [`acquire_with`](Self::acquire_with).
    pub fn lock_shared(&self) -> Result<LockGuard<'_>, LockError> {
        let generation = self.acquire_generation(Mode::Shared, self.timeout)?;
        Ok(LockGuard::new(self, Mode::Shared, generation))
    }

    /// Acquires the lock in `mode`, waiting as `timeout` says (ignoring the
    /// handle's own timeout): `None` waits forever, zero tries once, `Some(d)`
    /// waits at most `d`.
    ///
    /// # Errors
    ///
    /// - [`LockError::AlreadyLocked`] at once if this handle holds the lock, in
    ///   either mode, or another thread is acquiring through it.
    /// - [`LockError::Deadlock`] at once if the handle's [`LockGroup`] holds the
    ///   file in a conflicting mode.
    /// - [`LockError::Timeout`] if the lock stayed held elsewhere.
    /// - [`LockError::InvalidPath`], [`LockError::NotRegularFile`] or
    ///   [`LockError::MissingParent`] if the path cannot be a lock file.
    /// - [`LockError::Io`] for any other error from the operating system.
    pub fn acquire_with(&self, mode: Mode, timeout: Option<Duration>) -> Result<(), LockError> {
        self.acquire_generation(mode, timeout).map(drop)
    }

    /// Acquires the lock exclusively without blocking the calling thread,
    /// waiting at most the handle's timeout.
    ///
    /// The async form of [`acquire`](Self::acquire), for async runtimes such
    /// as tokio: it needs no particular runtime, and never blocks the
    /// executor waiting for the lock. An uncontended acquire completes in the
    /// first poll (which opens the lock file the first time, and stats its
    /// path). Otherwise a helper thread waits in the kernel (so the waiter
    /// gets the lock as promptly as a blocking one) and wakes the task. A
    /// panic in the handle's [`Opener`] on that thread reaches the caller.
    ///
    /// # Cancellation
    ///
    /// Dropping the future before it completes cancels the acquire. The drop
    /// interrupts the helper thread and returns once it is done (within about
    /// a millisecond), and if the lock was taken meanwhile it is released:
    /// after the drop the handle holds nothing and can acquire again. A future
    /// leaked with `mem::forget` is never cancelled: its wait goes on.
    ///
    /// # Errors
    ///
    /// As [`acquire_with`](Self::acquire_with), and [`LockError::Io`] if no
    /// helper thread could be started.
    pub async fn acquire_async(&self) -> Result<(), LockError> {
        self.acquire_with_async(Mode::Exclusive, self.timeout).await
    }

    /// Acquires a shared lock without blocking the calling thread, waiting at
    /// most the handle's timeout; see [`acquire_async`](Self::acquire_async).
    ///
    /// # Errors
    ///
    /// As [`acquire_async`](Self::acquire_async).
    pub async fn acquire_shared_async(&self) -> Result<(), LockError> {
        self.acquire_with_async(Mode::Shared, self.timeout).await
    }

    /// Acquires in `mode` without blocking the calling thread, waiting as
    /// `timeout` says; see [`acquire_async`](Self::acquire_async) and
    /// [`acquire_with`](Self::acquire_with).
    ///
    /// # Errors
    ///
    /// As [`acquire_async`](Self::acquire_async).
    pub async fn acquire_with_async(
        &self,
        mode: Mode,
        timeout: Option<Duration>,
    ) -> Result<(), LockError> {
        Acquire::new(self, mode, timeout).await.map(drop)
    }

    /// Acquires the lock exclusively without blocking the calling thread, and
    /// returns a guard that releases it on drop; see
    /// [`acquire_async`](Self::acquire_async).
    ///
    /// # Errors
    ///
    /// As [`acquire_async`](Self::acquire_async).
    pub async fn lock_async(&self) -> Result<LockGuard<'_>, LockError> {
        let generation = Acquire::new(self, Mode::Exclusive, self.timeout).await?;
        Ok(LockGuard::new(self, Mode::Exclusive, generation))
    }

    /// Acquires a shared lock without blocking the calling thread, and returns
    /// a guard that releases it on drop; see
    /// [`acquire_async`](Self::acquire_async).
    ///
    /// # Errors
    ///
    /// As [`acquire_async`](Self::acquire_async).
    pub async fn lock_shared_async(&self) -> Result<LockGuard<'_>, LockError> {
        let generation = Acquire::new(self, Mode::Shared, self.timeout).await?;
        Ok(LockGuard::new(self, Mode::Shared, generation))
    }

    /// Acquires, returning the hold's generation.
    fn acquire_generation(&self, mode: Mode, timeout: Option<Duration>) -> Result<u64, LockError> {
        let started = Instant::now();
        let wait = Wait::new(timeout, started);
        let outcome = self.core.acquire(mode, wait, timeout, None);
        self.core.trace(mode, timeout, started, &outcome, false);
        outcome
    }

    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// Releases the hold of `generation` if this handle still has that hold
    /// (for guards); returns whether it did.
    pub(crate) fn release_generation(&self, generation: u64) -> Result<bool, LockError> {
        if self.core.state().generation != generation {
            return Ok(false);
        }
        self.core.release_if(Some(generation)).map(|()| true)
    }

    /// Releases the lock this handle holds.
    ///
    /// # Errors
    ///
    /// [`LockError::NotLocked`] if this handle does not hold the lock, even when
    /// another handle for the same file does. [`LockError::Io`] if the operating
    /// system refused to unlock; the file is closed then, which releases it.
    pub fn release(&self) -> Result<(), LockError> {
        self.core.release_if(None)
    }
}

impl Core {
    /// Acquires in `mode`, waiting as `wait` says (or until `cancel` is
    /// cancelled), and returns the hold's generation. `timeout` is what the
    /// caller asked for, for the error.
    pub(crate) fn acquire(
        &self,
        mode: Mode,
        wait: Wait,
        timeout: Option<Duration>,
        cancel: Option<&Cancel>,
    ) -> Result<u64, LockError> {
        // Clears `acquiring` even if an `Opener` panics.
        struct Acquiring<'a>(&'a Core);
        impl Drop for Acquiring<'_> {
            fn drop(&mut self) {
                self.0.state().acquiring = false;
            }
        }
        let cached = {
            let mut state = self.state();
            if state.held.is_some() || state.acquiring {
                return Err(LockError::AlreadyLocked {
                    path: self.path.clone(),
                });
            }
            state.acquiring = true;
            state.file.take()
        };
        let acquiring = Acquiring(self);
        let (outcome, file) = self.acquire_file(mode, wait, timeout, cached, cancel);
        let mut state = self.state();
        // Clear `acquiring` in the same critical section that records the
        // hold, so that no other acquire slips in between.
        std::mem::forget(acquiring);
        state.acquiring = false;
        state.file = file;
        outcome?;
        state.held = Some(mode);
        state.generation += 1;
        Ok(state.generation)
    }

    /// Reports an acquire's outcome to `tracing`.
    pub(crate) fn trace(
        &self,
        mode: Mode,
        timeout: Option<Duration>,
        started: Instant,
        outcome: &Result<u64, LockError>,
        is_async: bool,
    ) {
        let waited_us = started.elapsed().as_micros();
        let path = &self.path;
        match outcome {
            Ok(_) => {
                tracing::debug!(?path, ?mode, ?timeout, waited_us, is_async, "acquired")
            }
            Err(e) => {
                tracing::debug!(?path, ?mode, ?timeout, waited_us, is_async, error = %e, "acquire failed")
            }
        }
    }

    /// Releases, but only the hold of `generation` when one is given.
    pub(crate) fn release_if(&self, generation: Option<u64>) -> Result<(), LockError> {
        let mut state = self.state();
        let current = generation.is_none_or(|g| g == state.generation);
        let (Some(mode), Some(opened), true) = (state.held, state.file.as_ref(), current) else {
            return Err(LockError::NotLocked {
                path: self.path.clone(),
            });
        };
        let unlocked = opened.file.unlock();
        tracing::debug!(path = ?self.path, ?mode, "released");
        if let Some(group) = &self.group {
            group.forget(opened.id, mode);
        }
        state.held = None;
        if let Err(source) = unlocked {
            state.file = None; // closing the file releases the lock
            return Err(self.io_error(source));
        }
        Ok(())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn io_error(&self, source: std::io::Error) -> LockError {
        LockError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Opens (if needed) and locks the file, re-opening if the path was
    /// replaced meanwhile. Returns the open file for the handle to keep, also
    /// on failure.
    fn acquire_file(
        &self,
        mode: Mode,
        wait: Wait,
        timeout: Option<Duration>,
        mut cached: Option<Opened>,
        cancel: Option<&Cancel>,
    ) -> (Result<(), LockError>, Option<Opened>) {
        loop {
            let (opened, was_cached) = match cached.take() {
                Some(opened) => (opened, true),
                None => match self.open() {
                    Ok(opened) => (opened, false),
                    Err(e) => return (Err(e), None),
                },
            };
            // A file kept open from an earlier acquire may since have been
            // deleted or replaced. Checking costs a stat, so it is done only
            // where a stale file would mislead: before reporting a deadlock
            // and before waiting. (After locking, every acquire checks.)
            let check = self.check_replacement.load(Ordering::Relaxed);
            let stale = |opened: &Opened| {
                check
                    && was_cached
                    && !matches!(self.opener.identify(), Ok(Some(id)) if id == opened.id)
            };
            if let Some(group) = &self.group
                && group.conflicts(opened.id, mode)
            {
                if stale(&opened) {
                    continue; // `cached` is None now: reopen
                }
                let path = self.path.clone();
                return (Err(LockError::Deadlock { path }), Some(opened));
            }
            let got = match sys::try_lock(&opened.file, mode) {
                Ok(false) if stale(&opened) => continue,
                Ok(false) => match (wait, cancel) {
                    (Wait::Once, _) => Ok(false),
                    (Wait::Forever, None) => sys::lock_forever(&opened.file, mode).map(|()| true),
                    (Wait::Until(deadline), None) => sys::lock_until(&opened.file, mode, deadline),
                    (Wait::Forever, Some(cancel)) => {
                        sys::lock_cancellable(&opened.file, mode, None, cancel)
                    }
                    (Wait::Until(deadline), Some(cancel)) => {
                        sys::lock_cancellable(&opened.file, mode, Some(deadline), cancel)
                    }
                },
                other => other,
            };
            match got {
                Ok(true) => {}
                Ok(false) => {
                    let error = LockError::Timeout {
                        path: self.path.clone(),
                        timeout: timeout.unwrap_or_default(),
                    };
                    return (Err(error), Some(opened));
                }
                Err(e) => return (Err(self.io_error(e)), Some(opened)),
            }
            // We hold the file we opened; make sure it is still the one the
            // path names, or the lock would exclude nobody.
            let identity = if check {
                self.opener.identify()
            } else {
                Ok(Some(opened.id))
            };
            match identity {
                Ok(Some(id)) if id == opened.id => {
                    if let Some(group) = &self.group {
                        group.record(opened.id, mode);
                    }
                    return (Ok(()), Some(opened));
                }
                Ok(_) => {
                    // Deleted or replaced: drop it (closing unlocks) and retry.
                    drop(opened);
                }
                Err(e) => {
                    let _ = opened.file.unlock();
                    return (Err(self.io_error(e)), Some(opened));
                }
            }
        }
    }

    fn open(&self) -> Result<Opened, LockError> {
        let path = &self.path;
        let invalid = |reason| LockError::InvalidPath {
            path: path.clone(),
            reason,
        };
        if path.as_os_str().is_empty() {
            return Err(invalid("the path is empty"));
        }
        if path.as_os_str().to_string_lossy().contains('\0') {
            return Err(invalid("the path contains a NUL byte"));
        }
        let not_regular = |kind| LockError::NotRegularFile {
            path: path.clone(),
            kind,
        };
        let file = self.opener.open().map_err(|e| match e {
            OpenError::NotRegularFile(kind) => not_regular(kind),
            OpenError::Io(source) => match source.kind() {
                std::io::ErrorKind::NotFound => LockError::MissingParent { path: path.clone() },
                std::io::ErrorKind::PermissionDenied => LockError::AccessDenied {
                    path: path.clone(),
                    source,
                },
                _ => self.io_error(source),
            },
        })?;
        let meta = file.metadata().map_err(|e| self.io_error(e))?;
        if let Some(kind) = sys::non_regular_kind(&meta) {
            return Err(not_regular(kind));
        }
        let id = sys::file_id(&file, &meta)
            .map(FileId)
            .map_err(|e| self.io_error(e))?;
        Ok(Opened { file, id })
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if let (Some(mode), Some(opened), Some(group)) = (state.held, &state.file, &self.group) {
            group.forget(opened.id, mode);
        }
        // Closing the file releases the OS lock.
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("path", &self.core.path)
            .field("timeout", &self.timeout)
            .field("held", &self.core.state().held)
            .field("grouped", &self.core.group.is_some())
            .finish()
    }
}
