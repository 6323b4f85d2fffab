//! Our lockers against the real other programs that use flock: Python's
//! locket 1.0.0 and filelock 4.3.1 (installed in `.venv` by
//! scripts/prepare-tests.sh) and util-linux flock(1). Each pairing runs both
//! ways, for the `locket` crate and for a plugin under `locket-host`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use locket_tests::{LineProcess, guests, host_command};

#[derive(Debug, Clone, Copy)]
enum Kind {
    Native,
    Plugin,
    PyLocket,
    PyFilelock,
    Flock,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn python() -> PathBuf {
    let python = root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: ./test.sh installs locket and filelock there",
        python.display()
    );
    python
}

/// A line-driven locker of `kind` on `DIR/NAME`.
fn command(kind: Kind, dir: &Path, name: &str) -> Command {
    let lock = dir.join(name);
    match kind {
        Kind::Native => {
            let mut c = Command::new(locket_tests::helper_exe());
            c.arg(&lock);
            c
        }
        Kind::Plugin => host_command(
            &[&format!("--dir={}::/data", dir.display())],
            guests::LOCKER,
            &[&format!("/data/{name}")],
        ),
        Kind::PyLocket | Kind::PyFilelock => {
            let mut c = Command::new(python());
            c.arg(root().join("tests/python/pylocker.py"))
                .arg(if matches!(kind, Kind::PyLocket) {
                    "locket"
                } else {
                    "filelock"
                })
                .arg(&lock);
            c
        }
        Kind::Flock => {
            let mut c = Command::new(root().join("tests/flock-locker.sh"));
            c.arg(&lock);
            c
        }
    }
}

fn start(kind: Kind, dir: &Path) -> LineProcess {
    LineProcess::spawn(command(kind, dir, "x.lock")).unwrap_or_else(|e| panic!("{kind:?}: {e}"))
}

/// The holder excludes the waiter (a timeout-0 try fails at once), and the
/// waiter, blocked with and without a timeout, gets the lock soon after release.
fn check_pair(holder_kind: Kind, waiter_kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let what = format!("{holder_kind:?} holds, {waiter_kind:?} waits");
    let mut holder = start(holder_kind, dir.path());
    let mut waiter = start(waiter_kind, dir.path());
    for request in ["acquire", "acquire 60000"] {
        assert_eq!(
            holder.ask("acquire", "acquired").unwrap(),
            "acquired",
            "{what}"
        );
        let line = waiter.ask("acquire 0", "error").unwrap();
        assert!(line.starts_with("error: timeout"), "{what}: {line}");
        waiter.send(request).unwrap();
        assert_eq!(
            waiter.maybe_line(Duration::from_millis(100)),
            None,
            "{what}: the waiter got in while the lock was held ({request})"
        );
        holder.ask("release", "released").unwrap();
        assert_eq!(
            waiter.line_within(locket_tests::PROMPT).unwrap(),
            "acquired",
            "{what} ({request})"
        );
        let line = holder.ask("acquire 0", "error").unwrap();
        assert!(line.starts_with("error: timeout"), "{what}: {line}");
        waiter.ask("release", "released").unwrap();
    }
}

#[test]
fn the_locket_crate_and_python_locket_exclude_each_other() {
    check_pair(Kind::Native, Kind::PyLocket);
    check_pair(Kind::PyLocket, Kind::Native);
}

#[test]
fn a_plugin_and_python_locket_exclude_each_other() {
    check_pair(Kind::Plugin, Kind::PyLocket);
    check_pair(Kind::PyLocket, Kind::Plugin);
}

#[test]
fn the_locket_crate_and_py_filelock_exclude_each_other() {
    check_pair(Kind::Native, Kind::PyFilelock);
    check_pair(Kind::PyFilelock, Kind::Native);
}

#[test]
fn a_plugin_and_py_filelock_exclude_each_other() {
    check_pair(Kind::Plugin, Kind::PyFilelock);
    check_pair(Kind::PyFilelock, Kind::Plugin);
}

#[test]
fn the_locket_crate_and_util_linux_flock_exclude_each_other() {
    check_pair(Kind::Native, Kind::Flock);
    check_pair(Kind::Flock, Kind::Native);
}

#[test]
fn a_plugin_and_util_linux_flock_exclude_each_other() {
    check_pair(Kind::Plugin, Kind::Flock);
    check_pair(Kind::Flock, Kind::Plugin);
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
        let mut python = command(Kind::PyLocket, dir.path(), "counter.lock");
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
