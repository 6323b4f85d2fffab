//! Linux: a blocking `flock(2)` with a deadline.
//!
//! flock has no timeout, so, like util-linux flock(1) with `-w`, we let a
//! timer signal interrupt it with `EINTR`. Unlike flock(1) we are a library
//! inside a multi-threaded process, so:
//!
//! - the timer is a POSIX timer directed at the waiting thread alone
//!   (`SIGEV_THREAD_ID`). Each thread makes one on its first timed wait and
//!   keeps it until it ends, so that a wait that gets the lock only has to
//!   disarm it, which costs less than deleting it. (An async acquire's helper
//!   thread, which waits once, makes one for its wait and deletes it after);
//! - the signal's handler does nothing and is installed without
//!   `SA_RESTART`, so that the blocked flock returns `EINTR`;
//! - the timer keeps firing every millisecond after the deadline. That closes
//!   the lost-wakeup race in which the signal lands after we checked the
//!   clock but before flock started to block;
//! - once the timer is disarmed, any signal still pending is delivered to
//!   the no-op handler before we return, never to the caller's code;
//! - a foreign signal that interrupts the wait is not an error: we check the
//!   clock and wait again.
//!
//! A cancellable wait registers its timer with its [`Cancel`], which fires it
//! from another thread, so that the wait ends within the same re-fire loop.

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::time::Instant;

use super::cancel::Cancel;
use super::timer::{self, ThreadTimer};
use crate::mode::Mode;

/// A thread's timer, and the process it was made in: a child made by
/// `fork` inherits the thread-local but not the timer, whose id may then
/// name one of the child's own.
struct Kept {
    timer: ThreadTimer,
    pid: u32,
}

thread_local! {
    /// This thread's timer, made by its first timed wait and deleted when
    /// the thread ends.
    static TIMER: RefCell<Option<Kept>> = const { RefCell::new(None) };
}

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
    // The signal must be unblocked here, so that once the timer is disarmed
    // any signal it left pending is delivered to the no-op handler before
    // we return.
    if timer::blocked_here(signal) {
        return None;
    }
    let wait = |timer: &ThreadTimer| lock_with(timer, file, mode, deadline, cancel);
    if cancel.is_some() {
        // An async acquire's helper thread waits once and ends: its timer is
        // deleted before the wait returns, so that nothing of the wait is
        // left once the acquire is dropped.
        return wait(&ThreadTimer::create(signal).ok()?);
    }
    let kept = TIMER.try_with(|slot| {
        let mut slot = slot.try_borrow_mut().ok()?;
        let pid = std::process::id();
        if slot.as_ref().is_some_and(|kept| kept.pid != pid) {
            // Not ours to delete: forget it without touching the id.
            std::mem::forget(slot.take());
        }
        if slot.is_none() {
            let timer = ThreadTimer::create(signal).ok()?;
            *slot = Some(Kept { timer, pid });
        }
        let outcome = wait(&slot.as_ref()?.timer);
        if outcome.is_none() || slot.as_ref()?.timer.disarm().is_err() {
            *slot = None; // deleted: a timer in an unknown state is not kept
        }
        outcome
    });
    match kept {
        Ok(outcome) => outcome,
        // The thread is ending and its thread-locals are gone: a timer for
        // this wait alone, deleted after it.
        Err(_) => wait(&ThreadTimer::create(signal).ok()?),
    }
}

/// The wait of [`lock_until`], with `timer` (not armed) to end it.
fn lock_with(
    timer: &ThreadTimer,
    file: &File,
    mode: Mode,
    deadline: Option<Instant>,
    cancel: Option<&Cancel>,
) -> Option<io::Result<bool>> {
    if let Some(deadline) = deadline {
        timer
            .arm(deadline.saturating_duration_since(Instant::now()))
            .ok()?;
    }
    // Dropped when this returns, before the caller disarms or deletes the
    // timer: nobody fires it after that.
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
