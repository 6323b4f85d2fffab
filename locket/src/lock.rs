//! The public handle, [`Lock`], and its guard, [`LockGuard`]: the API of a
//! lock. The work is done by the lock core ([`crate::lock_core`]), which the
//! async acquire ([`crate::future`]) drives too.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::LockError;
use crate::future::Acquire;
use crate::holds::Holds;
use crate::lock_core::Core;
use crate::mode::Mode;
use crate::open::{Opener, PathOpener};
use crate::wait::Wait;

/// A handle on the lock of one file: locket.py's `lock_file(path)` object.
///
/// Made by [`lock_file`](crate::lock_file) or [`LockGroup::lock_file`](crate::LockGroup::lock_file). The
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

impl Lock {
    /// A handle on the file at `path`, in the group whose holds are `group`,
    /// if any.
    pub(crate) fn at_path(path: PathBuf, group: Option<Arc<Holds>>) -> Self {
        let opener = Box::new(PathOpener(path.clone()));
        Self::from_parts(path, opener, group)
    }

    /// A handle whose file `opener` opens, in the group whose holds are
    /// `group`, if any.
    pub(crate) fn from_parts(
        path: PathBuf,
        opener: Box<dyn Opener>,
        group: Option<Arc<Holds>>,
    ) -> Self {
        Self {
            timeout: None,
            core: Arc::new(Core::new(path, opener, group)),
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
    /// program deleted, renamed or replaced the lock file meanwhile.
    ///
    /// On Unix most acquires pay one `fstat` of the file held, not a walk
    /// of the path: a file deleted or renamed over has no name left (link
    /// count 0), and any rename, link or unlink of it sets its change time.
    /// So once the path was found to name the file, and the file's change
    /// time is old enough (2 s) that a later change cannot leave it as it
    /// was, an unchanged link count and change time show that the path still
    /// names the file. Otherwise (a file changed or written to lately, a path
    /// through a symlink, a file with no link left) the path is resolved
    /// again, as on Windows always; and while the change time keeps moving
    /// (locket.py truncates its lock file at every acquire), the next 63
    /// checks walk the path without the `fstat`, as the check did before.
    ///
    /// What the `fstat` cannot see is a change above the file: a directory
    /// on the path renamed or replaced, or, for a relative path, the working
    /// directory changed. Those are noticed once the file itself changes.
    ///
    /// Turn the check off only where nothing deletes or replaces lock files
    /// while they are in use, which is what locket.py and `flock(1)` assume:
    /// a handle would then go on locking a file that nobody else can see.
    #[must_use]
    pub fn with_replacement_check(self, check: bool) -> Self {
        self.core.set_replacement_check(check);
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
        self.core.path()
    }

    /// Whether this handle holds the lock now.
    #[must_use]
    pub fn is_locked(&self) -> bool {
        self.core.held().is_some()
    }

    /// The mode this handle holds the lock in, if it holds it.
    #[must_use]
    pub fn mode(&self) -> Option<Mode> {
        self.core.held()
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
    /// - [`LockError::Deadlock`] at once if the handle's [`LockGroup`](crate::LockGroup) holds the
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
        Acquire::new(&self.core, mode, timeout).await.map(drop)
    }

    /// Acquires the lock exclusively without blocking the calling thread, and
    /// returns a guard that releases it on drop; see
    /// [`acquire_async`](Self::acquire_async).
    ///
    /// # Errors
    ///
    /// As [`acquire_async`](Self::acquire_async).
    pub async fn lock_async(&self) -> Result<LockGuard<'_>, LockError> {
        let generation = Acquire::new(&self.core, Mode::Exclusive, self.timeout).await?;
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
        let generation = Acquire::new(&self.core, Mode::Shared, self.timeout).await?;
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

    /// Releases the hold of `generation` if this handle still has that hold
    /// (for guards); returns whether it did.
    fn release_generation(&self, generation: u64) -> Result<bool, LockError> {
        if self.core.generation() != generation {
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

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("path", &self.core.path())
            .field("timeout", &self.timeout)
            .field("held", &self.core.held())
            .field("grouped", &self.core.is_grouped())
            .finish()
    }
}

/// Holds a [`Lock`] until it is dropped, like locket.py's `with lock:`.
///
/// Made by [`Lock::lock`] and [`Lock::lock_shared`] (and their async forms).
/// Dropping the guard releases the lock; [`LockGuard::unlock`] does the same
/// and reports any error.
#[must_use = "the lock is released as soon as the guard is dropped"]
#[derive(Debug)]
pub struct LockGuard<'a> {
    lock: &'a Lock,
    mode: Mode,
    /// The hold this guard stands for: if the handle was released and
    /// acquired again behind the guard's back, the guard leaves that new
    /// hold alone.
    generation: u64,
}

impl<'a> LockGuard<'a> {
    fn new(lock: &'a Lock, mode: Mode, generation: u64) -> Self {
        Self {
            lock,
            mode,
            generation,
        }
    }

    /// The mode the lock is held in.
    #[must_use]
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The handle this guard holds.
    #[must_use]
    pub fn lock(&self) -> &'a Lock {
        self.lock
    }

    /// Releases the lock now.
    ///
    /// # Errors
    ///
    /// [`LockError::NotLocked`] if the hold this guard stands for was
    /// released behind its back (through [`Lock::release`]), even if the handle
    /// has acquired again since; or [`LockError::Io`] if the operating system
    /// refused to unlock (the file is closed then, which releases it).
    pub fn unlock(self) -> Result<(), LockError> {
        let (lock, generation) = (self.lock, self.generation);
        std::mem::forget(self);
        match lock.release_generation(generation)? {
            true => Ok(()),
            false => Err(LockError::NotLocked {
                path: lock.path().to_path_buf(),
            }),
        }
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        // An error or `false` here means this hold is already released.
        let _ = self.lock.release_generation(self.generation);
    }
}
