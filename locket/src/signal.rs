//! The wake-up signal's handler (Linux): the one place in the library that
//! calls `sigaction`. A library must leave alone a signal the application
//! handles, ignores or otherwise uses, so it installs its handler only over
//! the default disposition. (The commands install theirs for SIGINT and
//! SIGTERM through the `locket-cmdline` crate.)

use std::io;
use std::ptr;

/// The current disposition of `signal` (a handler, `SIG_DFL` or `SIG_IGN`),
/// or `None` if it cannot be read.
pub(crate) fn disposition(signal: libc::c_int) -> Option<libc::sighandler_t> {
    // SAFETY: a null `act` only reads the disposition into `old`, which is
    // valid for writes.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        (libc::sigaction(signal, ptr::null(), &mut old) == 0).then_some(old.sa_sigaction)
    }
}

/// Installs `handler` for `signal`, with `flags` and an empty mask, if the
/// signal has its default disposition; returns whether it did.
///
/// # Errors
///
/// If `sigaction` fails (an invalid signal number, or one that cannot be
/// caught).
///
/// # Safety
///
/// `handler` must make only async-signal-safe calls, and have the signature
/// that `flags` asks for: `extern "C" fn(c_int)`, or with `SA_SIGINFO`
/// `extern "C" fn(c_int, *mut siginfo_t, *mut c_void)`.
pub(crate) unsafe fn install_if_default(
    signal: libc::c_int,
    handler: libc::sighandler_t,
    flags: libc::c_int,
) -> io::Result<bool> {
    let current = disposition(signal).ok_or_else(io::Error::last_os_error)?;
    if current != libc::SIG_DFL {
        return Ok(false);
    }
    // SAFETY: `action` is zeroed plain data with the fields sigaction reads
    // set; the caller vouches for the handler.
    let rc = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler;
        action.sa_flags = flags;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(signal, &action, ptr::null_mut())
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(true)
}
