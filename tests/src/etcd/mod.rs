//! etcd for the tests: a real cluster ([`EtcdCluster`], in `cluster.rs`;
//! its TLS files in `tls.rs`), where its programs are, and helpers for the
//! sessions the tests open on it.

use std::time::{Duration, Instant};

use crate::timing::PROMPT;

mod cluster;
mod programs;
mod tls;

pub use cluster::EtcdCluster;
pub use programs::{etcd_exe, etcdctl_exe};
pub use tls::TlsFiles;

/// Waits until `n` keys are queued for the lock `name`, at most
/// [`PROMPT`].
///
/// # Panics
///
/// When they are not, or the cluster cannot be read.
pub fn wait_for_queue(session: &locket_etcd::Session, name: &str, n: usize) {
    let until = Instant::now() + PROMPT;
    while session.holders(name).unwrap().len() < n {
        assert!(Instant::now() < until, "{n} keys never queued");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The token of a `token N` line (what `locket lock` scripts and the
/// plugin peer print).
///
/// # Panics
///
/// When the line is not one.
#[must_use]
pub fn token_of(line: &str) -> u64 {
    line.strip_prefix("token ")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("not a token line: {line:?}"))
}
