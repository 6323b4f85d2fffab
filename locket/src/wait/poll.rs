//! The portable wait: retrying a non-blocking lock with backoff.

use std::fs::File;
use std::io;
use std::thread;
use std::time::{Duration, Instant};

use super::cancel::Cancel;
use super::os_lock::try_lock;
use crate::mode::Mode;

/// Waits for `mode` on `file` by retrying a non-blocking lock with exponential
/// backoff (50 µs doubling to 5 ms), until `deadline` (if any) passes or
/// `cancel` (if any) is cancelled; returns whether it got the lock.
///
/// This is the fallback for platforms, or signal setups, where a blocking
/// wait cannot be interrupted. Its hand-off latency is bounded by the current
/// backoff step, and so is the time a cancellation takes to be seen.
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
