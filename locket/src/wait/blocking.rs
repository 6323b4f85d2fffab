//! Linux: a blocking `flock(2)` with a deadline.
//!
//! flock has no timeout, so, like util-linux flock(1) with `-w`, we let a
//! timer signal interrupt it with `EINTR`. Unlike flock(1) we are a library
//! inside a multi-threaded process, so:
//!
//! - the timer is a POSIX timer directed at the waiting thread alone
//!   (`SIGEV_THREAD_ID`), created for one wait and deleted after it;
//! - the signal's handler does nothing and is installed without
//!   `SA_RESTART`, so that the blocked flock returns `EINTR`;
//! - the timer keeps firing every millisecond after the deadline. That closes
//!   the lost-wakeup race in which the signal lands after we checked the
//!   clock but before flock started to block;
//! - once the timer is deleted, any signal still pending is delivered to the
//!   no-op handler before we return, never to the caller's code;
//! - a foreign signal that interrupts the wait is not an error: we check the
//!   clock and wait again.
//!
//! A cancellable wait registers its timer with its [`Cancel`], which fires it
//! from another thread, so that the wait ends within the same re-fire loop.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::time::Instant;

use super::cancel::Cancel;
use super::timer::{self, ThreadTimer};
use crate::mode::Mode;

/// Waits in the kernel for `mode` on `file` until `deadline` (if any) or
/// until `cancel` (if any) is cancelled; returns whether it got the lock.
///
/// `None` means that this thread cannot wait this way: the application uses
/// the wake-up signal, this thread blocks it, or no timer can be had
/// (RLIMIT_SIGPENDING, a sandboxed kernel). The caller then polls.
pub(super) fn lock_until(
    file: &File,
    mode: Mode,
    deadline: Option<Instant>,
    cancel: Option<&Cancel>,
) -> Option<io::Result<bool>> {
    let signal = timer::wake_signal()?;
    // The signal must be unblocked here, so that once the timer is deleted
    // (when `timer` drops) any signal it left pending is delivered to the
    // no-op handler before we return.
    if timer::blocked_here(signal) {
        return None;
    }
    let timer = ThreadTimer::create(signal).ok()?;
    if let Some(deadline) = deadline {
        timer
            .arm(deadline.saturating_duration_since(Instant::now()))
            .ok()?;
    }
    // Declared after `timer`, so dropped before it: nobody fires a deleted timer.
    let _registered = cancel.map(|cancel| cancel.register(timer.id()));
    let ended = || {
        cancel.is_some_and(Cancel::is_cancelled)
            || deadline.is_some_and(|deadline| Instant::now() >= deadline)
    };
    let operation = match mode {
        Mode::Exclusive => libc::LOCK_EX,
        Mode::Shared => libc::LOCK_SH,
    };
    loop {
        if ended() {
            return Some(Ok(false));
        }
        // SAFETY: flock on a descriptor `file` keeps open; no memory involved.
        if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
            return Some(Ok(true));
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Some(Err(error));
        }
    }
}
