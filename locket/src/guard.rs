use crate::{Lock, LockError, Mode};

/// Holds a [`Lock`] until it is dropped, like locket.py's `with lock:`.
///
/// Made by [`Lock::lock`] and [`Lock::lock_shared`]. Dropping the guard releases
/// the lock; [`LockGuard::unlock`] does the same and reports any error.
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
    pub(crate) fn new(lock: &'a Lock, mode: Mode, generation: u64) -> Self {
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
