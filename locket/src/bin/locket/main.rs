//! `locket`: run a command while holding a file lock, with locket's semantics.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command as Process, ExitCode};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[cfg(target_os = "linux")]
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
    #[arg(short = 'w', long = "wait", value_name = "DURATION", value_parser = locket::parse_duration)]
    wait: Option<Duration>,

    /// Take a shared lock, which other shared holders may hold at the same
    /// time, but not an exclusive one. Example: --shared
    #[arg(long)]
    shared: bool,

    /// The exit code when the lock cannot be had (flock(1)'s -E).
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

/// The child to pass SIGINT and SIGTERM on to, once it runs.
static CHILD: AtomicI32 = AtomicI32::new(0);

fn main() -> ExitCode {
    // Events go to stderr only when RUST_LOG asks (RUST_LOG=locket=debug).
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    match Cli::parse().command {
        Command::Lock(args) => lock_and_run(args),
        Command::Holders(args) => list_holders(&args),
    }
}

#[cfg(target_os = "linux")]
fn list_holders(args: &HoldersArgs) -> ExitCode {
    match holders::holders(&args.path) {
        Ok(list) => {
            if args.json {
                print!("{}", holders::json(&list));
            } else {
                print!("{}", holders::table(&args.path, &list));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("locket: cannot inspect {}: {e}", args.path.display());
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn list_holders(args: &HoldersArgs) -> ExitCode {
    let _ = (args.json, &args.path);
    eprintln!("locket: `holders` is not supported on this platform: it reads Linux's /proc/locks");
    ExitCode::from(2)
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
        Err(e) => {
            // Busy, or unusable (a missing directory, a FIFO): no lock either way.
            eprintln!("locket: {e}");
            return ExitCode::from(args.conflict_exit_code);
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
/// (and the kernel releases the lock).
#[cfg(unix)]
fn forward_termination_signals() {
    extern "C" fn forward(signal: libc::c_int) {
        let child = CHILD.load(Ordering::SeqCst);
        // SAFETY: kill(2) and _exit(2) are async-signal-safe.
        unsafe {
            if child > 0 {
                libc::kill(child, signal);
            } else {
                libc::_exit(128 + signal);
            }
        }
    }
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `action` is zeroed plain data with the fields sigaction reads
        // set; the handler only makes async-signal-safe calls. SA_RESTART keeps
        // our wait for the child going.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = forward as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// On Windows, Ctrl-C reaches the whole console group, child included.
#[cfg(not(unix))]
fn forward_termination_signals() {}
