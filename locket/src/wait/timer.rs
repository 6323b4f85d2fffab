//! Linux: the wake-up signal, and POSIX timers aimed at one thread.
//!
//! A timer made here sends `SIGRTMAX - 1` to the thread that made it
//! (`SIGEV_THREAD_ID`), whose handler does nothing: the signal's only effect
//! is to interrupt the blocking system call that thread is in with `EINTR`.
//! We install that handler only while the signal has its default
//! disposition; if the application handles the signal itself, timed waits
//! poll instead.

use std::io;
use std::ptr;
use std::sync::Mutex;
use std::time::Duration;

use crate::signal;

/// How often a fired timer fires again until the waiter notices.
const REFIRE: Duration = Duration::from_millis(1);

extern "C" fn on_wake(_signal: libc::c_int) {}

/// Returns the wake-up signal, `SIGRTMAX - 1`, once our handler is installed
/// for it, or `None` if the application uses that signal itself.
pub(super) fn wake_signal() -> Option<libc::c_int> {
    static INSTALL: Mutex<()> = Mutex::new(());
    let signal = libc::SIGRTMAX() - 1;
    let ours = on_wake as extern "C" fn(libc::c_int) as libc::sighandler_t;
    if signal::disposition(signal)? == ours {
        return Some(signal);
    }
    let _serialise = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: the handler only returns, which is async-signal-safe, and has
    // the one-argument signature that flags 0 ask for. No SA_RESTART: the
    // blocked call must return EINTR.
    match unsafe { signal::install_if_default(signal, ours, 0) } {
        Ok(true) => Some(signal),
        // Left alone: ours already (another thread was first), or theirs.
        _ => (signal::disposition(signal) == Some(ours)).then_some(signal),
    }
}

/// Whether the calling thread blocks `signal` (to take it with `sigwait` or
/// `signalfd`, say), in which case a timer could not interrupt it.
pub(super) fn blocked_here(signal: libc::c_int) -> bool {
    // SAFETY: a null `set` only reads the thread's mask into `mask`,
    // which pthread_sigmask initialises.
    unsafe {
        let mut mask: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, ptr::null(), &mut mask) != 0
            || libc::sigismember(&mask, signal) == 1
    }
}

/// A timer's id, as an integer: a `timer_t` is a pointer type, and the id is
/// only ever handed back to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimerId(usize);

impl TimerId {
    fn raw(self) -> libc::timer_t {
        self.0 as libc::timer_t
    }
}

/// A POSIX timer that signals the thread that made it once armed; deleted
/// when dropped.
pub(super) struct ThreadTimer {
    id: libc::timer_t,
}

impl ThreadTimer {
    /// A timer aimed at the calling thread with `signal`, not yet armed.
    pub(super) fn create(signal: libc::c_int) -> io::Result<Self> {
        // SAFETY: `event` is zeroed plain data with the fields the kernel
        // reads set; `id` is written by timer_create before use.
        let id = unsafe {
            let mut event: libc::sigevent = std::mem::zeroed();
            event.sigev_notify = libc::SIGEV_THREAD_ID;
            event.sigev_signo = signal;
            event.sigev_notify_thread_id = libc::gettid();
            let mut id: libc::timer_t = std::mem::zeroed();
            if libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut id) != 0 {
                return Err(io::Error::last_os_error());
            }
            id
        };
        Ok(Self { id })
    }

    /// The timer's id, for [`fire`] from another thread.
    pub(super) fn id(&self) -> TimerId {
        TimerId(self.id as usize)
    }

    /// Arms the timer to fire after `first`, then every [`REFIRE`].
    pub(super) fn arm(&self, first: Duration) -> io::Result<()> {
        settime(self.id, first)
    }

    /// Stops the timer; it can be armed again. A signal it queued before
    /// this returns is delivered to `on_wake` as the syscall returns, since
    /// the signal is unblocked in this thread.
    pub(super) fn disarm(&self) -> io::Result<()> {
        let stopped = libc::itimerspec {
            it_interval: timespec(Duration::ZERO),
            it_value: timespec(Duration::ZERO),
        };
        // SAFETY: the timer is live (deleted only on drop), and `stopped`
        // is initialised.
        if unsafe { libc::timer_settime(self.id, 0, &stopped, ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for ThreadTimer {
    fn drop(&mut self) {
        // SAFETY: deletes the timer made in `create`, exactly once. A signal
        // it queued before this returns is delivered to `on_wake` as the
        // syscall returns, since the signal is unblocked in this thread.
        unsafe {
            libc::timer_delete(self.id);
        }
    }
}

/// Fires timer `id` now, and every [`REFIRE`] after, so that its thread sees
/// why even if the first signal lands just before it blocks. The caller makes
/// sure the timer still exists.
pub(super) fn fire(id: TimerId) {
    let _ = settime(id.raw(), Duration::ZERO);
}

/// Arms timer `id` to fire after `first` (at least 1 ns, since zero would
/// disarm it) and every [`REFIRE`] after that.
fn settime(id: libc::timer_t, first: Duration) -> io::Result<()> {
    let spec = libc::itimerspec {
        it_interval: timespec(REFIRE),
        it_value: timespec(first.max(Duration::from_nanos(1))),
    };
    // SAFETY: callers pass a live timer, and `spec` is initialised.
    if unsafe { libc::timer_settime(id, 0, &spec, ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs().try_into().unwrap_or(libc::time_t::MAX),
        // Below 1e9, so it fits a c_long on every target.
        tv_nsec: d.subsec_nanos() as libc::c_long,
    }
}
