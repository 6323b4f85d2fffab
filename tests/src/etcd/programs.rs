//! Where etcd's programs are: on the `PATH`, as `scripts/prepare-tests.sh`
//! installs them.

use std::path::PathBuf;

use anyhow::Context;

/// The etcd server, as `scripts/prepare-tests.sh` installs it.
///
/// # Errors
///
/// When `etcd` is not on the `PATH`.
pub fn etcd_exe() -> anyhow::Result<PathBuf> {
    which("etcd")
}

/// etcd's own command-line client.
///
/// # Errors
///
/// When `etcdctl` is not on the `PATH`.
pub fn etcdctl_exe() -> anyhow::Result<PathBuf> {
    which("etcdctl")
}

fn which(name: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .with_context(|| {
            format!("`{name}` is not installed: run scripts/prepare-tests.sh (Debian etcd-server, etcd-client)")
        })
}
