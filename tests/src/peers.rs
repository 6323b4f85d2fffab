//! The kinds of peer ([`Peer`]) and how each is started, and the hand-over
//! check that every pair of kinds runs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::line_process::LineProcess;
use crate::plugins::guests;
use crate::process::{grant, host_command, native_peer_command, native_peer_exe, root, scratch};
use crate::timing::PROMPT;

/// The kinds of peer, each a real program that locks (see `tests/peers/README.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// The `locket` library: `locket-peer PATH`.
    Native,
    /// A raw std `File::lock`, the benchmark's floor: `locket-peer --raw PATH`.
    RawFlock,
    /// A plugin, `locker.wasm`, under `locket-host run`, with the lock file's
    /// directory granted as `/data`.
    Plugin,
    /// Python's locket 1.0.0, from the project's `.venv`.
    PyLocket,
    /// py-filelock 4.3.1, from the project's `.venv`.
    PyFilelock,
    /// util-linux flock(1), through `tests/peers/flock-peer.sh`.
    Flock,
}

impl Peer {
    /// The command that starts this peer on the lock file `dir/name`.
    ///
    /// # Panics
    ///
    /// For a Python peer, if the project's `.venv` is missing (`./test.sh`
    /// makes it).
    #[must_use]
    pub fn command(self, dir: &Path, name: &str) -> Command {
        let lock = dir.join(name);
        match self {
            Peer::Native => native_peer_command(&lock),
            Peer::RawFlock => {
                let mut c = Command::new(native_peer_exe());
                c.arg("--raw").arg(&lock);
                c
            }
            Peer::Plugin => {
                host_command(&[&grant(dir)], guests::LOCKER, &[&self.path_of(dir, name)])
            }
            Peer::PyLocket | Peer::PyFilelock => {
                let python = venv_python().unwrap_or_else(|| {
                    panic!(
                        "{}/.venv is missing: ./test.sh installs locket and filelock there",
                        root().display()
                    )
                });
                let mut c = Command::new(python);
                c.arg(root().join("tests/peers/python-peer.py"))
                    .arg(if self == Peer::PyLocket {
                        "locket"
                    } else {
                        "filelock"
                    })
                    .arg(&lock);
                c
            }
            Peer::Flock => {
                let mut c = Command::new(root().join("tests/peers/flock-peer.sh"));
                c.arg(&lock);
                c
            }
        }
    }

    /// Starts this peer on `dir/name` and waits until it is ready.
    ///
    /// # Errors
    ///
    /// As [`LineProcess::spawn`].
    pub fn start(self, dir: &Path, name: &str) -> anyhow::Result<LineProcess> {
        if matches!(self, Peer::Native | Peer::RawFlock) {
            let exe = native_peer_exe();
            anyhow::ensure!(
                exe.exists(),
                "{} is missing: build it with `cargo build -p locket-tests --bins`",
                exe.display()
            );
        }
        LineProcess::spawn(self.command(dir, name))
            .with_context(|| format!("starting the {self:?} peer"))
    }

    /// How this peer names the file `dir/name` in a command: its path, or
    /// for a plugin, which sees `dir` as `/data`, its guest path.
    #[must_use]
    pub fn path_of(self, dir: &Path, name: &str) -> String {
        match self {
            Peer::Plugin => format!("/data/{name}"),
            _ => dir.join(name).display().to_string(),
        }
    }
}

/// Checks that a `holder` peer excludes a `waiter` peer on one lock file and
/// hands it over. For each of `requests` (how the waiter asks, such as
/// `acquire`, `acquire 60000` or `acquire-shared`), with a fresh pair of
/// peers, so that the waiting acquire is the waiter's first (it opens the
/// file and waits in one call): the holder acquires; the waiter, asking as
/// the request says, does not get in while the lock is held, and gets it soon
/// after the holder releases; the holder's try (`acquire 0`) then fails with
/// `timeout`; and once the holder has the lock again, the waiter's try fails
/// too.
///
/// # Panics
///
/// If any of that does not happen.
pub fn holder_hands_over(holder: Peer, waiter: Peer, requests: &[&str]) {
    let (dir, _) = scratch();
    let what = format!("{holder:?} holds, {waiter:?} waits");
    let start = |kind: Peer| {
        kind.start(dir.path(), "x.lock")
            .unwrap_or_else(|e| panic!("{kind:?}: {e:#}"))
    };
    for request in requests {
        let (mut holding, mut waiting) = (start(holder), start(waiter));
        holding.ask("acquire", "acquired").unwrap();
        waiting.send(request).unwrap();
        assert_eq!(
            waiting.maybe_line(Duration::from_millis(100)),
            None,
            "{what}: the waiter got in while the lock was held ({request})"
        );
        holding.ask("release", "released").unwrap();
        assert_eq!(
            waiting.line_within(PROMPT).unwrap(),
            "acquired",
            "{what} ({request})"
        );
        let line = holding.ask("acquire 0", "error").unwrap();
        assert!(line.starts_with("error: timeout"), "{what}: {line}");
        waiting.ask("release", "released").unwrap();
        holding.ask("acquire", "acquired").unwrap();
        let line = waiting.ask("acquire 0", "error").unwrap();
        assert!(line.starts_with("error: timeout"), "{what}: {line}");
        holding.ask("release", "released").unwrap();
    }
}

/// The Python of the project's `.venv`, if `scripts/prepare-tests.sh` made it.
#[must_use]
pub fn venv_python() -> Option<PathBuf> {
    let python = root().join(".venv/bin/python");
    python.exists().then_some(python)
}
