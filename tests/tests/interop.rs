//! Our lockers against the real other programs that use flock: Python's
//! locket 1.0.0 and filelock 4.3.1 (installed in `.venv` by
//! scripts/prepare-tests.sh) and util-linux flock(1). Each pairing runs both
//! ways, for the `locket` library and for a plugin under `locket-host`.

use std::process::Stdio;

use locket_tests::{Peer, holder_hands_over};

/// Each way round, with and without a timeout.
fn check_pair(one: Peer, other: Peer) {
    for (holder, waiter) in [(one, other), (other, one)] {
        holder_hands_over(holder, waiter, &["acquire", "acquire 60000"]);
    }
}

#[test]
fn the_locket_crate_and_python_locket_exclude_each_other() {
    check_pair(Peer::Native, Peer::PyLocket);
}

#[test]
fn a_plugin_and_python_locket_exclude_each_other() {
    check_pair(Peer::Plugin, Peer::PyLocket);
}

#[test]
fn the_locket_crate_and_py_filelock_exclude_each_other() {
    check_pair(Peer::Native, Peer::PyFilelock);
}

#[test]
fn a_plugin_and_py_filelock_exclude_each_other() {
    check_pair(Peer::Plugin, Peer::PyFilelock);
}

#[test]
fn the_locket_crate_and_util_linux_flock_exclude_each_other() {
    check_pair(Peer::Native, Peer::Flock);
}

#[test]
fn a_plugin_and_util_linux_flock_exclude_each_other() {
    check_pair(Peer::Plugin, Peer::Flock);
}

/// Plugins, native Rust, Python locket and flock(1) increment one counter.
#[test]
fn a_mixed_crowd_loses_no_update_over_20_rounds() {
    let n = 40;
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("counter.lock");
        let data = dir.path().join("counter");
        std::fs::write(&data, "0\n").unwrap();
        let mut children = Vec::new();
        for _ in 0..2 {
            let mut plugin = locket_tests::plugin_incrementer(dir.path(), n);
            children.push(("plugin", plugin.stderr(Stdio::null()).spawn().unwrap()));
            let native = locket_tests::native_incrementer(&lock, &data, n)
                .spawn()
                .unwrap();
            children.push(("native", native));
        }
        let mut python = Peer::PyLocket.command(dir.path(), "counter.lock");
        let mut python = python
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut stdin = python.stdin.take().unwrap();
            writeln!(stdin, "increment {} {n}\nexit", data.display()).unwrap();
        }
        children.push(("python locket", python));
        let flock = locket_tests::flock_incrementer(&lock, &data, n)
            .spawn()
            .unwrap();
        children.push(("flock(1)", flock));
        for (name, mut child) in children {
            let status = child.wait().unwrap();
            assert!(status.success(), "round {round}: {name} failed: {status}");
        }
        let total: u64 = std::fs::read_to_string(&data)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(total, 6 * n, "round {round}: lost updates");
    }
}
