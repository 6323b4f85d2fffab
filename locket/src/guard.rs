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
}

impl<'a> LockGuard<'a> {
    pub(crate) fn new(lock: &'a Lock, mode: Mode) -> Self {
        Self { lock, mode }
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
    /// [`LockError::NotLocked`] if the handle was released behind the guard's
    /// back (through [`Lock::release`]), or [`LockError::Io`] if the operating
    /// system refused to unlock; the file is closed then, which releases it.
    pub fn unlock(self) -> Result<(), LockError> {
        let lock = self.lock;
        std::mem::forget(self);
        lock.release()
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        // An error here means the lock is already released; nothing to do.
        let _ = self.lock.release();
    }
}
