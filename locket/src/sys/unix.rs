//! Unix: flock(2) through std, identity by (device, inode), and on Linux a
//! timed blocking wait that a per-thread timer signal interrupts.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::Instant;

use crate::Mode;

/// What makes two paths the same lock: the file's device and inode numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    pub(crate) fn new(dev: u64, ino: u64) -> Self {
        Self { dev, ino }
    }
}

/// The identity of the file `meta` describes.
pub(crate) fn file_id(_file: &File, meta: &Metadata) -> io::Result<FileId> {
    Ok(FileId {
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

/// The identity of the file `path` names now (following symlinks), or `None`
/// if nothing is there any more.
pub(crate) fn path_id(path: &Path) -> io::Result<Option<FileId>> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Some(FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// A name for what `meta` describes if it is not a regular file.
pub(crate) fn non_regular_kind(meta: &Metadata) -> Option<&'static str> {
    kind_from_mode(meta.mode())
}

/// A name for the file type in a `st_mode` if it is not a regular file.
///
/// The `S_IF*` values are the same on every Unix (and `mode_t` is not), so
/// they are spelled out here.
pub(crate) fn kind_from_mode(mode: u32) -> Option<&'static str> {
    match mode & 0o170_000 {
        0o100_000 => None,
        0o040_000 => Some("directory"),
        0o010_000 => Some("FIFO"),
        0o140_000 => Some("socket"),
        0o020_000 => Some("character device"),
        0o060_000 => Some("block device"),
        _ => Some("special file"),
    }
}

/// Opens (creating if missing) the lock file at `path`, never truncating it.
///
/// An existing file is opened read-only, as flock(1) does, so that a lock file
/// we may read but not write can still be locked. A missing one is created
/// with mode 0666 before umask. `O_NONBLOCK` and `O_NOCTTY` make sure that a
/// FIFO or terminal that appears at the path can neither block the open nor
/// become our controlling terminal; std adds `O_CLOEXEC`.
pub(crate) fn open(path: &Path) -> io::Result<File> {
    let flags = libc::O_NONBLOCK | libc::O_NOCTTY;
    match OpenOptions::new().read(true).custom_flags(flags).open(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o666)
            .custom_flags(flags)
            .open(path),
        other => other,
    }
}

/// Waits for `mode` on `file` until `deadline`.
///
/// On Linux the wait blocks in the kernel, so the lock is taken as soon as it
/// is released; a timer aimed at this thread interrupts the wait at the
/// deadline (see [`timed`]). Elsewhere it falls back to polling.
pub(crate) fn lock_until(file: &File, mode: Mode, deadline: Instant) -> io::Result<bool> {
    #[cfg(target_os = "linux")]
    if let Some(signal) = timed::wake_signal() {
        return timed::lock_until(file, mode, Some(deadline), None, signal);
    }
    super::poll_until(file, mode, Some(deadline), None)
}

/// Waits for `mode` on `file` until `deadline` (if any) or until `cancel` is
/// cancelled from another thread; returns whether it got the lock.
///
/// On Linux the wait blocks in the kernel as [`lock_until`]'s does, and
/// cancelling fires the waiter's timer at once. Elsewhere it polls, and sees a
/// cancellation within one backoff step.
pub(crate) fn lock_cancellable(
    file: &File,
    mode: Mode,
    deadline: Option<Instant>,
    cancel: &super::Cancel,
) -> io::Result<bool> {
    #[cfg(target_os = "linux")]
    if let Some(signal) = timed::wake_signal() {
        return timed::lock_until(file, mode, deadline, Some(cancel), signal);
    }
    super::poll_until(file, mode, deadline, Some(cancel))
}

/// Interrupts the wait `cancel` belongs to, if its waiter blocks in the kernel.
#[cfg(target_os = "linux")]
pub(crate) fn wake(cancel: &super::Cancel) {
    timed::fire_now(cancel);
}

#[cfg(target_os = "linux")]
mod timed {
    //! A blocking flock(2) with a deadline.
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
    //!   the lost-wakeup race in which the signal lands after we checked the clock
    //!   but before flock started to block;
    //! - once the timer is deleted, any signal still pending is delivered to the
    //!   no-op handler before we return, never to the caller's code;
    //! - a foreign signal that interrupts the wait is not an error: we check the
    //!   clock and wait again.
    //!
    //! A cancellable wait also lets [`fire_now`] re-arm its timer from another
    //! thread, so that the wait ends within the same re-fire loop.
    //!
    //! We only install the handler while the signal has its default disposition.
    //! If the application has its own handler for it, or blocks it in the
    //! waiting thread (to take it with sigwait or signalfd), or no timer can be
    //! created, we leave it alone and poll instead.

    use std::fs::File;
    use std::io;
    use std::os::fd::AsRawFd;
    use std::ptr;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use super::super::Cancel;
    use crate::Mode;

    /// How often the timer re-fires after the deadline until the waiter sees it.
    const REFIRE: Duration = Duration::from_millis(1);

    extern "C" fn on_wake(_signal: libc::c_int) {}

    /// The signal locket uses to interrupt timed waits: `SIGRTMAX - 1`.
    fn signal_number() -> libc::c_int {
        libc::SIGRTMAX() - 1
    }

    /// Returns the wake-up signal once our handler is installed for it, or
    /// `None` if the application uses that signal itself.
    pub(super) fn wake_signal() -> Option<libc::c_int> {
        static INSTALL: Mutex<()> = Mutex::new(());
        let signal = signal_number();
        let ours = on_wake as extern "C" fn(libc::c_int) as libc::sighandler_t;
        let current = current_handler(signal)?;
        if current == ours {
            return Some(signal);
        }
        let _serialise = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
        match current_handler(signal)? {
            h if h == ours => Some(signal),
            libc::SIG_DFL => {
                // SAFETY: `action` is fully initialised (zeroed, then the fields
                // sigaction reads are set); the handler only returns, which is
                // async-signal-safe.
                let installed = unsafe {
                    let mut action: libc::sigaction = std::mem::zeroed();
                    action.sa_sigaction = ours;
                    action.sa_flags = 0; // deliberately no SA_RESTART
                    libc::sigemptyset(&mut action.sa_mask);
                    libc::sigaction(signal, &action, ptr::null_mut())
                };
                (installed == 0).then_some(signal)
            }
            _ => None,
        }
    }

    fn current_handler(signal: libc::c_int) -> Option<libc::sighandler_t> {
        // SAFETY: a null `act` only reads the disposition into `old`, which is
        // valid for writes.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            (libc::sigaction(signal, ptr::null(), &mut old) == 0).then_some(old.sa_sigaction)
        }
    }

    pub(super) fn lock_until(
        file: &File,
        mode: Mode,
        deadline: Option<Instant>,
        cancel: Option<&Cancel>,
        signal: libc::c_int,
    ) -> io::Result<bool> {
        let poll = || super::super::poll_until(file, mode, deadline, cancel);
        if blocked_here(signal) {
            // This thread blocks the signal: the application may consume it
            // with sigwait or signalfd, so leave it alone and poll.
            return poll();
        }
        // The signal is unblocked here, so once the timer is deleted (when
        // `timer` drops) any signal it left pending is delivered to the
        // no-op handler before we return.
        let Ok(timer) = ThreadTimer::create(signal) else {
            // No timer to be had (RLIMIT_SIGPENDING, a sandboxed kernel): poll.
            return poll();
        };
        if let Some(deadline) = deadline {
            let first = deadline.saturating_duration_since(Instant::now());
            if settime(timer.id, first).is_err() {
                return poll();
            }
        }
        // Let `cancel` fire the timer. `_registered` drops before `timer`, so
        // nobody re-arms a deleted timer.
        let _registered = cancel.map(|cancel| Registered::new(cancel, timer.id));
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
                return Ok(false);
            }
            // SAFETY: flock on a descriptor `file` keeps open; no memory involved.
            if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
                return Ok(true);
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
    }

    /// Makes a waiting thread's timer reachable from [`fire_now`] while it
    /// lives.
    struct Registered<'a>(&'a Cancel);

    impl<'a> Registered<'a> {
        fn new(cancel: &'a Cancel, id: libc::timer_t) -> Self {
            *slot(cancel) = Some(id as usize);
            Self(cancel)
        }
    }

    impl Drop for Registered<'_> {
        fn drop(&mut self) {
            *slot(self.0) = None;
        }
    }

    fn slot(cancel: &Cancel) -> std::sync::MutexGuard<'_, Option<usize>> {
        cancel.timer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fires the timer of the wait `cancel` belongs to now, and every
    /// [`REFIRE`] after, so that the waiter sees the cancellation even if the
    /// first signal lands just before it blocks.
    pub(super) fn fire_now(cancel: &Cancel) {
        let registered = slot(cancel);
        if let Some(id) = *registered {
            // The timer lives while it is registered, and we hold the slot.
            let _ = settime(id as libc::timer_t, Duration::ZERO);
        }
    }

    /// Whether the calling thread blocks `signal`.
    fn blocked_here(signal: libc::c_int) -> bool {
        // SAFETY: a null `set` only reads the thread's mask into `mask`,
        // which pthread_sigmask initialises.
        unsafe {
            let mut mask: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, ptr::null(), &mut mask) != 0
                || libc::sigismember(&mask, signal) == 1
        }
    }

    /// A POSIX timer that sends a signal to the thread that made it, once armed
    /// (see [`settime`]); deleted when dropped.
    struct ThreadTimer {
        id: libc::timer_t,
    }

    impl ThreadTimer {
        /// A timer aimed at the calling thread, not yet armed.
        fn create(signal: libc::c_int) -> io::Result<Self> {
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

    impl Drop for ThreadTimer {
        fn drop(&mut self) {
            // SAFETY: deletes the timer created in `arm`, exactly once. A signal
            // it queued before this returns is delivered to `on_wake` as the
            // syscall returns, since the signal is unblocked in this thread.
            unsafe {
                libc::timer_delete(self.id);
            }
        }
    }

    fn timespec(d: Duration) -> libc::timespec {
        libc::timespec {
            tv_sec: d.as_secs().try_into().unwrap_or(libc::time_t::MAX),
            // Below 1e9, so it fits a c_long on every target.
            tv_nsec: d.subsec_nanos() as libc::c_long,
        }
    }
}
