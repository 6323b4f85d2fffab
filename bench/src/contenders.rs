//! The contenders: the kinds of lock the sections measure against each
//! other, and [`Contender`], one contender process in a run.
//!
//! Every contender process is a peer of the shared fixtures
//! ([`locket_tests::Peer`], protocol in `tests/peers/README.md`), started
//! and driven through them; a [`Kind`] says which peer plays it and with
//! which timeout.

use std::path::Path;

use anyhow::Context;
use locket_tests::{LineProcess, Peer};

/// Every kind of contender: native, guest and Python.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A raw blocking `flock` (std `File::lock`): the floor.
    Flock,
    /// The `locket` library, without a timeout.
    Locket,
    /// The `locket` library, with a timeout of 60 s.
    LocketTimeout,
    /// A guest (`locker.wasm`) under `locket-host run`, without a timeout.
    Guest,
    /// A guest under `locket-host run`, with a timeout of 60 s.
    GuestTimeout,
    /// locket.py with timeout None.
    PyLocket,
    /// locket.py with a timeout of 5 s.
    PyLocketTimeout,
    /// locket.py with timeout 0: a single try.
    PyLocketTry,
    /// py-filelock's `FileLock`.
    Filelock,
}

impl Kind {
    /// The contender's label in the report and the plot.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Flock => "raw blocking `flock` (floor)",
            Kind::Locket => "`locket`, no timeout",
            Kind::LocketTimeout => "`locket`, timeout 60 s",
            Kind::Guest => "guest, no timeout",
            Kind::GuestTimeout => "guest, timeout 60 s",
            Kind::PyLocket => "locket.py, timeout None",
            Kind::PyLocketTimeout => "locket.py, timeout 5 s",
            Kind::PyLocketTry => "locket.py, timeout 0",
            Kind::Filelock => "py-filelock",
        }
    }

    /// The peer that plays this contender.
    pub fn peer(self) -> Peer {
        match self {
            Kind::Flock => Peer::RawFlock,
            Kind::Locket | Kind::LocketTimeout => Peer::Native,
            Kind::Guest | Kind::GuestTimeout => Peer::Plugin,
            Kind::PyLocket | Kind::PyLocketTimeout | Kind::PyLocketTry => Peer::PyLocket,
            Kind::Filelock => Peer::PyFilelock,
        }
    }

    /// The timeout of its acquires in milliseconds, as the protocol's
    /// `handoff [MS]` and `bench N [MS]` take it; `None` waits forever.
    fn timeout_ms(self) -> Option<u64> {
        match self {
            Kind::LocketTimeout | Kind::GuestTimeout => Some(60_000),
            Kind::PyLocketTimeout => Some(5_000),
            Kind::PyLocketTry => Some(0),
            Kind::Flock | Kind::Locket | Kind::Guest | Kind::PyLocket | Kind::Filelock => None,
        }
    }

    /// The protocol line `command`, followed by this kind's timeout if it has one.
    fn line(self, command: &str) -> String {
        match self.timeout_ms() {
            Some(ms) => format!("{command} {ms}"),
            None => command.to_owned(),
        }
    }

    /// Whether a Python library plays it (they poll, and need the `.venv`).
    pub fn is_python(self) -> bool {
        matches!(self.peer(), Peer::PyLocket | Peer::PyFilelock)
    }
}

/// Whether the Python contenders can run: the project's `.venv` is there
/// (`scripts/prepare-tests.sh` makes it). Without it their rows are left out.
pub fn python_available() -> bool {
    locket_tests::venv_python().is_some()
}

/// `dir/name`, made empty and then left for 2.1 s, as lock files usually
/// are by the time they are used: the replaced-file check trusts a file's
/// change time once it is 2 s old (see `Lock::with_replacement_check`);
/// before that it walks the path, which a fresh file would measure.
///
/// # Errors
///
/// If the file cannot be written.
pub fn aged_lock_file(dir: &Path, name: &str) -> std::io::Result<std::path::PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, "")?;
    std::thread::sleep(std::time::Duration::from_millis(2100));
    Ok(path)
}

/// Runs each plugin the contenders use once with `--compiler cranelift`,
/// so that the shared cache holds Cranelift's code for them. A first run
/// would otherwise run Winch's code (`--compiler auto`), which is not what
/// later runs, and users, get.
///
/// # Errors
///
/// If a plugin cannot be compiled.
pub fn fill_the_cache(dir: &Path) -> anyhow::Result<()> {
    let grant = locket_tests::grant(dir);
    use locket_tests::guests::{COUNTER, HOLDER, LOCKER};
    for plugin in [LOCKER, HOLDER, COUNTER] {
        let out = locket_tests::host_command(&[&grant, "--compiler=cranelift"], plugin, &[])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .output()
            .with_context(|| format!("running {plugin}"))?;
        // The plugins end at once without input (some with a usage error of
        // their own); only a message from the host means it did not load.
        let stderr = String::from_utf8_lossy(&out.stderr);
        anyhow::ensure!(
            !stderr.contains("locket-host: error"),
            "{plugin} did not load: {stderr}"
        );
    }
    Ok(())
}

/// One contender process in a run: the peer of its kind, and the hand-off
/// latencies measured with it so far.
pub struct Contender {
    /// What it is.
    pub kind: Kind,
    /// Hand-off latencies in µs, pushed by the hand-off section.
    pub latencies: Vec<f64>,
    process: LineProcess,
}

impl Contender {
    /// Starts a contender of `kind` on the lock file `dir/lock` and waits
    /// until it is ready.
    pub fn start(kind: Kind, dir: &Path, lock: &str) -> anyhow::Result<Self> {
        let process = kind
            .peer()
            .start(dir, lock)
            .with_context(|| format!("starting the {} contender", kind.name()))?;
        Ok(Self {
            kind,
            latencies: Vec::new(),
            process,
        })
    }

    /// Starts one hand-off (`handoff [MS]`) and waits until the contender
    /// says it is about to wait; [`Contender::acquired_at`] then tells when
    /// it got the lock.
    pub fn start_handoff(&mut self) -> anyhow::Result<()> {
        self.process.ask(&self.kind.line("handoff"), "waiting")?;
        Ok(())
    }

    /// When the hand-off's acquire happened, by the contender's wall clock,
    /// in ns since the Unix epoch.
    pub fn acquired_at(&mut self) -> anyhow::Result<u128> {
        self.process.number()
    }

    /// The mean ns of one uncontended acquire+release over `n`, timed by
    /// the contender itself (`bench N [MS]`).
    pub fn bench(&mut self, n: u64) -> anyhow::Result<f64> {
        self.process.send(&self.kind.line(&format!("bench {n}")))?;
        self.process.number()
    }

    /// Starts incrementing the number in the file `dir/data` under the lock
    /// for `ms` milliseconds (`contend DATA MS`); [`Contender::contended`]
    /// then tells how many times it did.
    pub fn start_contending(&mut self, dir: &Path, data: &str, ms: u64) -> anyhow::Result<()> {
        let data = self.kind.peer().path_of(dir, data);
        self.process.send(&format!("contend {data} {ms}"))
    }

    /// How many increments the contention run made.
    pub fn contended(&mut self) -> anyhow::Result<f64> {
        self.process.number()
    }

    /// Closes the contender's input and waits for it to exit.
    pub fn finish(mut self) -> anyhow::Result<()> {
        self.process.wait()?;
        Ok(())
    }
}
