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

/// Waits for `mode` on `file` until `deadline` by retrying a non-blocking lock
/// with exponential backoff (50 µs doubling to 5 ms).
///
/// This is the portable fallback for platforms, or signal setups, where a
/// blocking wait cannot be interrupted at the deadline. Its hand-off latency is
/// bounded by the current backoff step.
pub(crate) fn poll_until(file: &File, mode: Mode, deadline: Instant) -> io::Result<bool> {
    let mut step = Duration::from_micros(50);
    loop {
        if try_lock(file, mode)? {
            return Ok(true);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        thread::sleep(step.min(deadline - now));
        step = (step * 2).min(Duration::from_millis(5));
    }
}
