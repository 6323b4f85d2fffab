//! `locket`: run a command while holding a file lock, with locket's semantics.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command as Process, ExitCode};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

mod holders;

/// File locks from the shell, shared with Python's locket and filelock,
/// util-linux flock(1), and locket plugins.
#[derive(Parser)]
#[command(name = "locket", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run COMMAND while holding the lock on PATH, and release it when
    /// COMMAND ends.
    ///
    /// The lock is held by this `locket` process; its descriptor is
    /// close-on-exec, so COMMAND does not inherit it (flock(1) passes its own
    /// on). SIGINT and SIGTERM are passed on to COMMAND. The exit code is
    /// COMMAND's, or 128 + n when a signal n ended it.
    ///
    /// Example: locket lock -w 5s /tmp/deploy.lock -- make deploy
    Lock(LockArgs),

    /// List who holds the lock on PATH, and who waits for it, with their pid,
    /// mode (exclusive or shared) and command name. Linux only: it reads
    /// /proc/locks. A plugin's lock shows as its `locket-host` process.
    ///
    /// Example: locket holders /tmp/deploy.lock --json
    Holders(HoldersArgs),
}

#[derive(Args)]
struct HoldersArgs {
    /// Print a JSON array of {pid, mode, state, kind, command} objects.
    #[arg(long)]
    json: bool,

    /// The lock file. Example: /tmp/deploy.lock
    path: PathBuf,
}

#[derive(Args)]
struct LockArgs {
    /// How long to wait for the lock: no --wait waits forever, `-w 0` tries
    /// once. A bare number is seconds. Example: -w 500ms, -w 2s, -w 1m
    #[arg(short = 'w', long = "wait", value_name = "DURATION", value_parser = locket::cli::parse_duration)]
    wait: Option<Duration>,

    /// Take a shared lock, which other shared holders may hold at the same
    /// time, but not an exclusive one. Example: --shared
    #[arg(long)]
    shared: bool,

    /// The exit code when the lock is held elsewhere, at once with `-w 0` or
    /// after the wait (flock(1)'s -E). A lock file that cannot be used at all
    /// (missing directory, not a regular file, no permission) exits 66.
    /// Example: --conflict-exit-code 75
    #[arg(long, value_name = "N", default_value_t = 1)]
    conflict_exit_code: u8,

    /// The lock file; it is created if missing, and never truncated or
    /// deleted. Example: /tmp/deploy.lock
    path: PathBuf,

    /// The command to run and its arguments, after `--`.
    /// Example: -- make deploy
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

/// The exit code when the lock file cannot be used (EX_NOINPUT, as flock(1)).
const EXIT_CANNOT_OPEN: u8 = 66;

/// The child to pass SIGINT and SIGTERM on to, once it runs.
static CHILD: AtomicI32 = AtomicI32::new(0);

fn main() -> ExitCode {
    locket::cli::init_tracing();
    match Cli::parse().command {
        Command::Lock(args) => lock_and_run(args),
        Command::Holders(args) => list_holders(&args),
    }
}

fn list_holders(args: &HoldersArgs) -> ExitCode {
    match locket::holders(&args.path) {
        Ok(list) => {
            if args.json {
                print!("{}", holders::json(&list));
            } else {
                print!("{}", holders::table(&args.path, &list));
            }
            ExitCode::SUCCESS
        }
        // Off Linux the library says so (it reads /proc), as a usage error.
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
            eprintln!("locket: `holders` is not supported on this platform: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("locket: cannot inspect {}: {e}", args.path.display());
            ExitCode::FAILURE
        }
    }
}

fn lock_and_run(args: LockArgs) -> ExitCode {
    let lock = locket::lock_file(&args.path).with_timeout(args.wait);
    let acquired = if args.shared {
        lock.acquire_shared()
    } else {
        lock.acquire()
    };
    match acquired {
        Ok(()) => {}
        Err(e @ locket::LockError::Timeout { .. }) => {
            eprintln!("locket: {e}");
            return ExitCode::from(args.conflict_exit_code);
        }
        Err(e) => {
            // Not a conflict: the lock file cannot be used at all (a missing
            // directory, a FIFO, no permission). flock(1) exits 66 here too.
            eprintln!("locket: {e}");
            return ExitCode::from(EXIT_CANNOT_OPEN);
        }
    }
    let (program, rest) = args.command.split_first().expect("clap requires COMMAND");
    // Hold SIGINT and SIGTERM back until the child's id is known, so that one
    // arriving just after the spawn is passed on rather than lost. The child
    // starts with an empty signal mask (std resets it).
    let held_back = HeldBack::new();
    forward_termination_signals();
    let spawned = Process::new(program).args(rest).spawn();
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
    drop(lock); // releases it
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
        locket::cli::handle_signals(
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
