//! How an acquire waits for a lock that is held elsewhere.
//!
//! Without a deadline the wait blocks in the kernel. With one, on Linux, it
//! blocks in the kernel too, and a timer aimed at the waiting thread
//! interrupts it at the deadline ([`blocking`]); where that cannot be done
//! it polls with backoff ([`poll`]). A cancellable wait (an async acquire's
//! helper thread) waits the same ways and can be ended from another thread
//! ([`Cancel`]).

mod cancel;
mod os_lock;
mod poll;

#[cfg(target_os = "linux")]
mod blocking;
#[cfg(target_os = "linux")]
mod timer;

use std::fs::File;
use std::io;
use std::time::{Duration, Instant};

pub(crate) use cancel::Cancel;
pub(crate) use os_lock::try_lock;

use crate::mode::Mode;

/// How long one acquire may wait.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wait {
    /// Try once.
    Once,
    /// Until the lock is free.
    Forever,
    /// Until the lock is free, or this instant.
    Until(Instant),
}

impl Wait {
    /// The wait a timeout asks for, counted from `start`: `None` waits
    /// forever, zero tries once.
    pub(crate) fn new(timeout: Option<Duration>, start: Instant) -> Self {
        match timeout {
            None => Wait::Forever,
            Some(t) if t.is_zero() => Wait::Once,
            Some(t) => start.checked_add(t).map_or(Wait::Forever, Wait::Until),
        }
    }
}

/// Waits for `mode` on `file`, which was held elsewhere at the last try, as
/// `wait` says, or until `cancel` (if any) is cancelled; returns whether it
/// got the lock.
pub(crate) fn wait_for(
    file: &File,
    mode: Mode,
    wait: Wait,
    cancel: Option<&Cancel>,
) -> io::Result<bool> {
    let deadline = match (wait, cancel) {
        (Wait::Once, _) => return Ok(false),
        (Wait::Forever, None) => return os_lock::lock_forever(file, mode).map(|()| true),
        (Wait::Forever, Some(_)) => None,
        (Wait::Until(deadline), _) => Some(deadline),
    };
    #[cfg(target_os = "linux")]
    if let Some(outcome) = blocking::lock_until(file, mode, deadline, cancel) {
        return outcome;
    }
    poll::poll_until(file, mode, deadline, cancel)
}
