//! The operating system's lock calls, through std: `flock(2)` on Unix,
//! `LockFileEx` on Windows.

use std::fs::{File, TryLockError};
use std::io;

use crate::mode::Mode;

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
