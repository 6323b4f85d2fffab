//! The arguments of `locket lock`, which both backends read.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

#[derive(Args)]
pub struct LockArgs {
    /// How long to wait for the lock: no --wait waits forever, `-w 0` tries
    /// once. A bare number is seconds. Example: -w 500ms, -w 2s, -w 1m
    #[arg(short = 'w', long = "wait", value_name = "DURATION", value_parser = locket_cmdline::parse_duration)]
    pub wait: Option<Duration>,

    /// Take a shared lock, which other shared holders may hold at the same
    /// time, but not an exclusive one. Example: --shared
    #[arg(long)]
    pub shared: bool,

    /// The exit code when the lock is held elsewhere, at once with `-w 0` or
    /// after the wait (flock(1)'s -E). A lock file that cannot be used at all
    /// (missing directory, not a regular file, no permission) exits 66.
    /// Example: --conflict-exit-code 75
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub conflict_exit_code: u8,

    /// The lease's time to live, for an etcd lock: if this process stops
    /// answering, the cluster frees its lock after this long. Example:
    /// --lease-ttl 10s
    #[arg(long, value_name = "DURATION", value_parser = locket_cmdline::parse_duration)]
    pub lease_ttl: Option<Duration>,

    /// The lock file; it is created if missing, and never truncated or
    /// deleted. Or an etcd lock, etcd://HOST:PORT[,HOST:PORT...]/NAME
    /// (etcd+https:// for TLS; credentials and TLS files from
    /// LOCKET_ETCD_USER, LOCKET_ETCD_PASSWORD or LOCKET_ETCD_PASSWORD_FILE,
    /// LOCKET_ETCD_CA, LOCKET_ETCD_CERT, LOCKET_ETCD_KEY). COMMAND gets the
    /// grant's fencing token in LOCKET_TOKEN. Example: /tmp/deploy.lock
    pub path: PathBuf,

    /// The command to run and its arguments, after `--`.
    /// Example: -- make deploy
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}
