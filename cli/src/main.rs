//! `locket`: run a command while holding a file lock, with locket's semantics.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod args;
mod child;
mod etcd;
mod holders;

use args::LockArgs;

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
    /// For an etcd lock (etcd://HOST:PORT/NAME), each key in its queue: the
    /// lease and its TTL left, the holder's host name and pid, its mode and
    /// its place (the fencing token of its grant).
    ///
    /// Example: locket holders /tmp/deploy.lock --json
    Holders(HoldersArgs),
}

#[derive(Args)]
struct HoldersArgs {
    /// Print a JSON array of {pid, mode, state, kind, command} objects.
    #[arg(long)]
    json: bool,

    /// The lock file, or an etcd lock: etcd://HOST:PORT[,HOST:PORT...]/NAME
    /// (etcd+https:// for TLS). Example: /tmp/deploy.lock
    path: PathBuf,
}

/// The exit code when the lock file cannot be used (EX_NOINPUT, as flock(1)).
const EXIT_CANNOT_OPEN: u8 = 66;

fn main() -> ExitCode {
    locket_cmdline::init_tracing();
    match Cli::parse().command {
        Command::Lock(args) => lock_and_run(args),
        Command::Holders(args) => list_holders(&args),
    }
}

fn list_holders(args: &HoldersArgs) -> ExitCode {
    if let Some(address) = etcd::address_of(&args.path) {
        return etcd::list_holders(address, args.json);
    }
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
    if let Some(address) = etcd::address_of(&args.path) {
        return etcd::lock_and_run(address, &args);
    }
    if args.lease_ttl.is_some() {
        eprintln!("locket: --lease-ttl is for etcd locks (etcd://...), not lock files");
        return ExitCode::from(2);
    }
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
    let code = child::run(&args.command, []);
    drop(lock); // releases it
    code
}
