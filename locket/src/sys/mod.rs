//! Platform code: opening lock files, file identity, and OS lock calls.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::*;

use std::fs::{File, TryLockError};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::Mode;

/// Takes `mode` on `file` if that is possible at once.
///
/// Returns `Ok(false)` when another open file description holds a conflicting lock.
pub(crate) fn try_lock(file: &File, mode: Mode) -> io::Result<bool> {
    let attempt = match mode {
        Mode::Exclusive => file.try_lock(),
        Mode::Shared => file.try_lock_shared(),
    };
    match attempt {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// Waits for `mode` on `file` with no deadline, in the kernel.
///
/// A signal that interrupts the wait does not end it.
pub(crate) fn lock_forever(file: &File, mode: Mode) -> io::Result<()> {
    loop {
        let result = match mode {
            Mode::Exclusive => file.lock(),
            Mode::Shared => file.lock_shared(),
        };
        match result {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Lets another thread end a cancellable wait ([`lock_cancellable`]) early.
#[derive(Debug, Default)]
pub(crate) struct Cancel {
    cancelled: AtomicBool,
    /// The waiting thread's timer while it blocks in the kernel (Linux), which
    /// [`Cancel::cancel`] fires at once. Kept as an integer, since a
    /// `timer_t` is a pointer type and the id is only ever handed back to the
    /// kernel.
    #[cfg(target_os = "linux")]
    pub(crate) timer: std::sync::Mutex<Option<usize>>,
}

impl Cancel {
    /// Whether [`cancel`](Self::cancel) was called.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Ends the wait: a blocked waiter is interrupted and returns `false`.
    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        #[cfg(target_os = "linux")]
        wake(self);
    }
}

/// Waits for `mode` on `file` by retrying a non-blocking lock with exponential
/// backoff (50 µs doubling to 5 ms), until `deadline` (if any) passes or
/// `cancel` (if any) is cancelled; returns whether it got the lock.
///
/// This is the portable fallback for platforms, or signal setups, where a
/// blocking wait cannot be interrupted. Its hand-off latency is bounded by the
/// current backoff step, and so is the time a cancellation takes to be seen.
pub(crate) fn poll_until(
    file: &File,
    mode: Mode,
    deadline: Option<Instant>,
    cancel: Option<&Cancel>,
) -> io::Result<bool> {
    let mut step = Duration::from_micros(50);
    loop {
        if try_lock(file, mode)? {
            return Ok(true);
        }
        if cancel.is_some_and(Cancel::is_cancelled) {
            return Ok(false);
        }
        let nap = match deadline {
            None => step,
            Some(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    return Ok(false);
                }
                step.min(deadline - now)
            }
        };
        thread::sleep(nap);
        step = (step * 2).min(Duration::from_millis(5));
    }
}
