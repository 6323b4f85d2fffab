//! Ending a wait from another thread: how a dropped async acquire stops its
//! helper thread.

use std::sync::atomic::{AtomicBool, Ordering};

#[cfg(target_os = "linux")]
use super::timer::{self, TimerId};

/// Lets another thread end a cancellable wait early.
#[derive(Debug, Default)]
pub(crate) struct Cancel {
    cancelled: AtomicBool,
    /// The waiting thread's timer while it blocks in the kernel (Linux),
    /// which [`Cancel::cancel`] fires at once.
    #[cfg(target_os = "linux")]
    timer: std::sync::Mutex<Option<TimerId>>,
}

impl Cancel {
    /// Whether [`cancel`](Self::cancel) was called.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Ends the wait: a waiter that polls sees it at its next step, and one
    /// that blocks in the kernel is interrupted by its own timer.
    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        #[cfg(target_os = "linux")]
        if let Some(id) = *self.slot() {
            // The timer lives while it is registered, and we hold the slot.
            timer::fire(id);
        }
    }

    /// Makes `id` the timer that [`cancel`](Self::cancel) fires, until the
    /// returned registration is dropped. It must be dropped before the timer
    /// is deleted.
    #[cfg(target_os = "linux")]
    pub(crate) fn register(&self, id: TimerId) -> Registered<'_> {
        *self.slot() = Some(id);
        Registered(self)
    }

    #[cfg(target_os = "linux")]
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<TimerId>> {
        self.timer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A waiting thread's timer, reachable from [`Cancel::cancel`] while this lives.
#[cfg(target_os = "linux")]
pub(crate) struct Registered<'a>(&'a Cancel);

#[cfg(target_os = "linux")]
impl Drop for Registered<'_> {
    fn drop(&mut self) {
        *self.0.slot() = None;
    }
}
