//! Signal handlers (Unix): the one place that calls `sigaction`.
//!
//! The library installs the no-op handler that its timed waits need; the
//! commands install theirs for SIGINT and SIGTERM through
//! [`cli::handle_signals`](crate::cli::handle_signals). Both go through
//! [`install`], each with its own rule about what it may replace.

use std::io;
use std::ptr;

/// What an installation may replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replace {
    /// Only the default disposition: a library must leave alone a signal the
    /// application handles, ignores or otherwise uses. (Linux's timed waits.)
    #[cfg(target_os = "linux")]
    IfDefault,
    /// Anything but `SIG_IGN`: a program leaves a signal ignored when its
    /// parent asked for that (a shell's `cmd &` ignores SIGINT). (The
    /// commands, through `cli`.)
    #[cfg(feature = "cli")]
    UnlessIgnored,
}

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

/// Installs `handler` for `signal`, with `flags` and an empty mask, if
/// `replace` allows it given the current disposition; returns whether it
/// did.
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
pub(crate) unsafe fn install(
    signal: libc::c_int,
    handler: libc::sighandler_t,
    flags: libc::c_int,
    replace: Replace,
) -> io::Result<bool> {
    let current = disposition(signal).ok_or_else(io::Error::last_os_error)?;
    let allowed = match replace {
        #[cfg(target_os = "linux")]
        Replace::IfDefault => current == libc::SIG_DFL,
        #[cfg(feature = "cli")]
        Replace::UnlessIgnored => current != libc::SIG_IGN,
    };
    if !allowed {
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
