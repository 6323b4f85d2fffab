//! Running COMMAND under a held lock: SIGINT and SIGTERM passed on, its
//! exit code passed back.

use std::ffi::OsString;
use std::process::{Command as Process, ExitCode};
use std::sync::atomic::{AtomicI32, Ordering};

/// The child to pass SIGINT and SIGTERM on to, once it runs.
static CHILD: AtomicI32 = AtomicI32::new(0);

/// Runs COMMAND with `env` added, passing SIGINT and SIGTERM on, and
/// returns its exit code (127 or 126 when it could not be started).
pub fn run<'a>(command: &[OsString], env: impl IntoIterator<Item = (&'a str, String)>) -> ExitCode {
    let (program, rest) = command.split_first().expect("clap requires COMMAND");
    // Hold SIGINT and SIGTERM back until the child's id is known, so that one
    // arriving just after the spawn is passed on rather than lost. The child
    // starts with an empty signal mask (std resets it).
    let held_back = HeldBack::new();
    forward_termination_signals();
    let spawned = Process::new(program).args(rest).envs(env).spawn();
    if let Ok(child) = &spawned {
        CHILD.store(i32::try_from(child.id()).unwrap_or(0), Ordering::SeqCst);
    }
    drop(held_back); // delivers any signal that came meanwhile
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            eprintln!("locket: cannot run {}: {e}", program.to_string_lossy());
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            return ExitCode::from(code);
        }
    };
    let status = child.wait();
    // The child is reaped: its pid may be reused, so signal nobody from now on.
    CHILD.store(-1, Ordering::SeqCst);
    match status {
        Ok(status) => exit_code(status),
        Err(e) => {
            eprintln!("locket: waiting for {}: {e}", program.to_string_lossy());
            ExitCode::FAILURE
        }
    }
}

/// COMMAND's exit code, or 128 + n for signal n.
fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return ExitCode::from(u8::try_from(128 + signal).unwrap_or(255));
        }
    }
    ExitCode::from(
        status
            .code()
            .and_then(|c| u8::try_from(c).ok())
            .unwrap_or(1),
    )
}

/// Blocks SIGINT and SIGTERM in this thread until dropped.
struct HeldBack {
    #[cfg(unix)]
    old: libc::sigset_t,
}

impl HeldBack {
    #[cfg(unix)]
    fn new() -> Self {
        // SAFETY: both sets are initialised by sigemptyset/pthread_sigmask
        // before they are read.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
            Self { old }
        }
    }

    #[cfg(not(unix))]
    fn new() -> Self {
        Self {}
    }
}

impl Drop for HeldBack {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in `new`.
        #[cfg(unix)]
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut());
        }
    }
}

/// Passes SIGINT and SIGTERM on to the child; before it runs, they end us
/// (and the kernel releases the lock). A SIGINT from the terminal is not
/// passed on, since the terminal sends it to the child too. Signals the shell
/// told us to ignore stay ignored.
#[cfg(unix)]
fn forward_termination_signals() {
    extern "C" fn forward(
        signal: libc::c_int,
        info: *mut libc::siginfo_t,
        _context: *mut libc::c_void,
    ) {
        // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler;
        // kill(2) and _exit(2) are async-signal-safe, and errno is restored.
        unsafe {
            #[cfg(target_os = "linux")]
            let from_terminal = !info.is_null() && (*info).si_code == libc::SI_KERNEL;
            #[cfg(not(target_os = "linux"))]
            let from_terminal = info.is_null();
            let child = CHILD.load(Ordering::SeqCst);
            let errno = std::io::Error::last_os_error().raw_os_error();
            if child > 0 {
                if !from_terminal {
                    libc::kill(child, signal);
                }
            } else if child == 0 {
                libc::_exit(128 + signal);
            }
            #[cfg(target_os = "linux")]
            if let Some(errno) = errno {
                *libc::__errno_location() = errno;
            }
            #[cfg(not(target_os = "linux"))]
            let _ = errno;
        }
    }
    let forward = forward as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
        as libc::sighandler_t;
    // SAFETY: `forward` only makes async-signal-safe calls and takes the
    // SA_SIGINFO arguments. SA_RESTART keeps our wait for the child going.
    let installed = unsafe {
        locket_cmdline::handle_signals(
            &[libc::SIGINT, libc::SIGTERM],
            forward,
            libc::SA_RESTART | libc::SA_SIGINFO,
        )
    };
    if let Err(e) = installed {
        eprintln!("locket: warning: cannot pass signals on to the command: {e}");
    }
}

/// On Windows, Ctrl-C reaches the whole console group, child included.
#[cfg(not(unix))]
fn forward_termination_signals() {}
