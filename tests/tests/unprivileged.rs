//! Permission cases, run as an unprivileged user (`setpriv`), since root, as
//! which CI runs, ignores file permissions.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use locket_tests::{LineProcess, guests, host_exe, native_peer_exe};

const NOBODY: &str = "65534";

/// `program args...` as user and group 65534, with no supplementary groups.
fn as_nobody(program: &Path) -> Command {
    assert!(
        Command::new("id").arg("-u").output().unwrap().stdout == b"0\n",
        "these tests drop privileges with setpriv and so need root (CI runs as root)"
    );
    let mut c = Command::new("setpriv");
    c.args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups"])
        .arg(program);
    c
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A root-owned directory that others may enter but not write, with a
/// read-only lock file and an unreadable one.
fn layout() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("readable.lock"), "keep").unwrap();
    chmod(&dir.path().join("readable.lock"), 0o444);
    std::fs::write(dir.path().join("secret.lock"), "").unwrap();
    chmod(&dir.path().join("secret.lock"), 0o000);
    chmod(dir.path(), 0o755);
    dir
}

#[test]
fn a_read_only_lock_file_is_locked_and_others_are_refused_cleanly() {
    let dir = layout();
    let d = dir.path();
    let helper = |name: &str| {
        let mut c = as_nobody(&native_peer_exe());
        c.arg(d.join(name));
        LineProcess::spawn(c).unwrap()
    };
    // Readable but not writable: locked (opened read-only, like flock(1)).
    let mut reader = helper("readable.lock");
    reader.ask("acquire", "acquired").unwrap();
    LineProcess::native(&d.join("readable.lock"))
        .unwrap()
        .ask("acquire 0", "error: timeout")
        .unwrap();
    // Not readable, and not creatable in a directory we may not write.
    helper("secret.lock")
        .ask("acquire", "error: access-denied")
        .unwrap();
    helper("new.lock")
        .ask("acquire", "error: access-denied")
        .unwrap();
    assert!(!d.join("new.lock").exists());
    assert_eq!(
        std::fs::read_to_string(d.join("readable.lock")).unwrap(),
        "keep"
    );
}

#[test]
fn an_unprivileged_host_gets_access_denied_from_the_os_too() {
    let dir = layout();
    let mut c = as_nobody(&host_exe());
    c.args(["run", "--no-cache"])
        .arg(format!("--dir={}::/data", dir.path().display()))
        .arg(guests::LOCKER);
    let mut plugin = LineProcess::spawn_within(c, std::time::Duration::from_secs(120)).unwrap();
    plugin.ask("open /data/readable.lock", "opened 0").unwrap();
    plugin.ask("acquire", "acquired").unwrap();
    plugin.ask("open /data/secret.lock", "opened 1").unwrap();
    plugin.ask("#1 acquire", "error: access-denied").unwrap();
    plugin.ask("open /data/new.lock", "opened 2").unwrap();
    plugin.ask("#2 acquire", "error: access-denied").unwrap();
    assert!(!dir.path().join("new.lock").exists());
}
