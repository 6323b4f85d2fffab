//! The fixtures of the cross-process tests, which the demo and the
//! benchmark use too: the peers, and the helpers the tests share.
//!
//! A *peer* is a real process that holds a lock and is driven by lines: the
//! `locket` crate (`locket-peer`), a plugin under `locket-host`
//! (`locker.wasm`), Python's locket and py-filelock, and util-linux flock(1).
//! They all speak one line protocol with one error vocabulary, written down
//! in `tests/peers/README.md`. [`Peer`] says how to start each kind, and
//! [`LineProcess`] drives one. The plugins are built for wasm32-wasip2 by
//! this crate's build script; [`guests`] has their paths.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

#[cfg(target_os = "linux")]
pub mod etcd;

mod timing;
pub use timing::PROMPT;

/// A child process that reads commands on stdin and answers one line each.
pub struct LineProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Arc<Lines>,
    name: String,
}

/// The child's output lines, handed over by a reader thread: a queue under a
/// mutex, and a condition variable that puts the waiting thread to sleep at
/// once. (A channel's receive spins for a while first, and the benchmark's
/// timings would pay for that spinning whenever the peer it just woke runs on
/// the same core.)
#[derive(Default)]
struct Lines {
    queue: Mutex<Queue>,
    arrived: Condvar,
}

#[derive(Default)]
struct Queue {
    lines: VecDeque<String>,
    /// The child closed its output (or it could not be read).
    closed: bool,
}

impl Lines {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl LineProcess {
    /// Spawns `command` with piped stdin and stdout and waits for its `ready` line.
    ///
    /// # Errors
    ///
    /// If it cannot be spawned or does not say `ready` within [`PROMPT`].
    pub fn spawn(command: Command) -> anyhow::Result<Self> {
        Self::spawn_within(command, PROMPT)
    }

    /// As [`LineProcess::spawn`], waiting up to `ready_within` for `ready`.
    ///
    /// # Errors
    ///
    /// If it cannot be spawned or does not say `ready` in time.
    pub fn spawn_within(mut command: Command, ready_within: Duration) -> anyhow::Result<Self> {
        let name = format!("{command:?}");
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning {name}"))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let lines = Arc::new(Lines::default());
        let shared = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                shared.queue().lines.push_back(line);
                shared.arrived.notify_one();
            }
            shared.queue().closed = true;
            shared.arrived.notify_one();
        });
        let stdin = child.stdin.take();
        let mut process = Self {
            child,
            stdin,
            lines,
            name,
        };
        let line = process.line_within(ready_within)?;
        if line != "ready" {
            bail!("{}: expected \"ready\", got {line:?}", process.name);
        }
        Ok(process)
    }

    /// Spawns `locket-host run` with `host_args` (grants, flags) before the
    /// plugin and `plugin_args` after it, using the test compilation cache.
    ///
    /// # Errors
    ///
    /// As [`LineProcess::spawn`].
    pub fn plugin(host_args: &[&str], plugin: &str, plugin_args: &[&str]) -> anyhow::Result<Self> {
        Self::spawn(host_command(host_args, plugin, plugin_args))
    }

    /// Spawns the native peer (`locket-peer`) on the lock file `path`.
    ///
    /// # Errors
    ///
    /// As [`LineProcess::spawn`].
    pub fn native(path: &Path) -> anyhow::Result<Self> {
        Self::spawn(native_peer_command(path))
    }

    /// Sends one command line.
    ///
    /// # Errors
    ///
    /// If the child's stdin is closed.
    pub fn send(&mut self, line: &str) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("stdin closed")?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        Ok(())
    }

    /// The next line, waiting at most `within`.
    ///
    /// # Errors
    ///
    /// If no line comes in time or the child closed stdout.
    pub fn line_within(&mut self, within: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + within;
        let mut queue = self.lines.queue();
        loop {
            if let Some(line) = queue.lines.pop_front() {
                return Ok(line);
            }
            if queue.closed {
                bail!("{}: closed its output", self.name);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("{}: no answer within {within:?}", self.name);
            }
            queue = self
                .lines
                .arrived
                .wait_timeout(queue, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The next line, if one arrives within `within`, without failing if none does.
    #[must_use]
    pub fn maybe_line(&mut self, within: Duration) -> Option<String> {
        self.line_within(within).ok()
    }

    /// The last word of the next line (within [`PROMPT`]), as a number of
    /// type `N`: the answer of a measurement command such as `bench N` (an
    /// `f64`) or `at NS` (a `u128`: as an `f64`, nanoseconds since 1970
    /// would be rounded to 256 ns).
    ///
    /// # Errors
    ///
    /// If no line comes, or its last word is not a number.
    pub fn number<N: std::str::FromStr>(&mut self) -> anyhow::Result<N> {
        let line = self.line_within(PROMPT)?;
        line.split_whitespace()
            .last()
            .and_then(|w| w.parse().ok())
            .with_context(|| format!("{}: expected a number, got {line:?}", self.name))
    }

    /// Waits up to [`PROMPT`] for the next line and checks it starts with `prefix`.
    ///
    /// # Errors
    ///
    /// If the line does not come or does not match.
    pub fn expect(&mut self, prefix: &str) -> anyhow::Result<String> {
        let line = self.line_within(PROMPT)?;
        if !line.starts_with(prefix) {
            bail!("{}: expected {prefix:?}, got {line:?}", self.name);
        }
        Ok(line)
    }

    /// Sends `command` and checks the answer starts with `prefix`.
    ///
    /// # Errors
    ///
    /// As [`LineProcess::send`] and [`LineProcess::expect`].
    pub fn ask(&mut self, command: &str, prefix: &str) -> anyhow::Result<String> {
        self.send(command)?;
        self.expect(prefix)
    }

    /// Closes the child's stdin and waits for it to exit, at most [`PROMPT`]
    /// (then it is killed and this fails).
    ///
    /// # Errors
    ///
    /// If it does not exit in time or cannot be waited for.
    pub fn wait(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        self.stdin = None;
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if started.elapsed() > PROMPT {
                self.kill()?;
                bail!("{}: did not exit within {PROMPT:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `kill SIGNAL` (as the `kill` command spells it, like `-USR1`)
    /// to the child `times` times, checking each time that it stays silent:
    /// a signal must neither fail nor end the wait it is in.
    ///
    /// # Errors
    ///
    /// If `kill` fails or the child answers meanwhile.
    pub fn stays_quiet_while_signalled(&mut self, signal: &str, times: u32) -> anyhow::Result<()> {
        let pid = self.id().to_string();
        for i in 0..times {
            let status = Command::new("kill").args([signal, &pid]).status()?;
            anyhow::ensure!(status.success(), "kill {signal} {pid} failed");
            if let Some(line) = self.maybe_line(Duration::from_millis(2)) {
                bail!(
                    "{}: answered {line:?} after signal {i} ({signal})",
                    self.name
                );
            }
        }
        Ok(())
    }

    /// Kills the child with SIGKILL and reaps it.
    ///
    /// # Errors
    ///
    /// If the kill or the wait fails.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// The child's process id.
    #[must_use]
    pub fn id(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for LineProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The kinds of peer, each a real program that locks (see `tests/peers/README.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// The `locket` crate: `locket-peer PATH`.
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

/// The root of this checkout.
#[must_use]
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the checkout")
        .to_path_buf()
}

/// The Python of the project's `.venv`, if `scripts/prepare-tests.sh` made it.
#[must_use]
pub fn venv_python() -> Option<PathBuf> {
    let python = root().join(".venv/bin/python");
    python.exists().then_some(python)
}

/// The path of the native peer, `locket-peer`, built beside the running test.
#[must_use]
pub fn native_peer_exe() -> PathBuf {
    sibling_exe("locket-peer")
}

/// The guest SDK packages that `scripts/prepare-tests.sh` builds from
/// `guest-python/` and `guest-js/` into `target/dist/`, and installs: the
/// wheel into the project's `.venv`, the npm tarball into `target/js-env`.
/// The tests build their plugins with what those installed, as users do.
pub mod dist {
    use std::path::PathBuf;

    /// The release version: one for every crate and both packages.
    pub const VERSION: &str = env!("CARGO_PKG_VERSION");

    /// `target/dist/` in the checkout.
    #[must_use]
    pub fn dir() -> PathBuf {
        super::root().join("target/dist")
    }

    /// The wheel of the Python distribution `locket-guest`.
    #[must_use]
    pub fn wheel() -> PathBuf {
        dir().join(format!("locket_guest-{VERSION}-py3-none-any.whl"))
    }

    /// The npm tarball of the package `locket-guest`.
    #[must_use]
    pub fn npm_tarball() -> PathBuf {
        dir().join(format!("locket-guest-{VERSION}.tgz"))
    }

    /// `locket-py`, installed into `.venv` from [`wheel`].
    #[must_use]
    pub fn locket_py() -> PathBuf {
        super::root().join(".venv/bin/locket-py")
    }

    /// `locket-js`, installed into `target/js-env` from [`npm_tarball`].
    #[must_use]
    pub fn locket_js() -> PathBuf {
        super::root().join("target/js-env/node_modules/.bin/locket-js")
    }
}

/// The plugin peer in Python, `tests/peers/python-plugin/locker.py`, built
/// by the installed `locket-py build` ([`dist::locket_py`]) into
/// `python-guest/locker-py.wasm` beside the running binary: once per change
/// of its source or of the installed package, and written whole under a
/// temporary name first.
///
/// # Errors
///
/// If `locket-py` is not installed or the build fails.
pub fn python_plugin() -> anyhow::Result<PathBuf> {
    python_script_plugin(&root().join("tests/peers/python-plugin/locker.py"))
}

/// A Python script built into a plugin by the installed `locket-py build`,
/// as [`python_plugin`] builds the peer: `python-guest/NAME.wasm` beside the
/// running binary, rebuilt when the script or the installed wheel changed.
///
/// # Errors
///
/// If `locket-py` is not installed or the build fails.
pub fn python_script_plugin(script: &Path) -> anyhow::Result<PathBuf> {
    let tool = dist::locket_py();
    anyhow::ensure!(
        tool.exists(),
        "{} is missing: ./test.sh installs the locket-guest wheel into .venv",
        tool.display()
    );
    built_plugin(script, "python-guest", "py", &[dist::wheel()], |partial| {
        let mut command = Command::new(&tool);
        command.arg("build").arg(script).arg("-o").arg(partial);
        command
    })
}

/// `DIR/NAME-SUFFIX.wasm` beside the running binary, built from `script`
/// by the command `build` makes (given the partial file to write) unless
/// it is newer than the script and every one of `inputs`. The build writes
/// a partial file of this process's own, renamed into place when done.
fn built_plugin(
    script: &Path,
    dir: &str,
    suffix: &str,
    inputs: &[PathBuf],
    build: impl FnOnce(&Path) -> Command,
) -> anyhow::Result<PathBuf> {
    /// One build at a time in this process: tests that need the same
    /// plugin at once wait for one build rather than make it twice.
    static BUILDING: Mutex<()> = Mutex::new(());
    let _one = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    let name = script
        .file_stem()
        .context("the script has no name")?
        .to_string_lossy()
        .into_owned();
    let out_dir = sibling_exe("x")
        .parent()
        .context("no directory beside the running binary")?
        .join(dir);
    std::fs::create_dir_all(&out_dir)?;
    let wasm = out_dir.join(format!("{name}-{suffix}.wasm"));
    let mut edited = std::fs::metadata(script)?.modified()?;
    for input in inputs {
        edited = edited.max(std::fs::metadata(input)?.modified()?);
    }
    let built = std::fs::metadata(&wasm).and_then(|m| m.modified());
    if matches!(built, Ok(built) if built > edited) {
        return Ok(wasm);
    }
    let partial = out_dir.join(format!(
        "{name}-{suffix}.wasm.{}.partial",
        std::process::id()
    ));
    let mut command = build(&partial);
    let status = command
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("running {command:?}"))?;
    anyhow::ensure!(
        status.success(),
        "building {} failed: {status}",
        script.display()
    );
    std::fs::rename(&partial, &wasm)?;
    Ok(wasm)
}

/// `locket-peer PATH`: the native peer on the lock file `path`.
fn native_peer_command(path: &Path) -> Command {
    let mut command = Command::new(native_peer_exe());
    command.arg(path);
    command
}

/// Opens (creating if missing, never truncating) `path` for a raw std
/// `File::lock`, as the benchmark's floor locks: the native peer's
/// `--raw`, and the benchmark's in-process holder and loop.
///
/// # Errors
///
/// If the file cannot be opened or created.
pub fn raw_lock_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// The path of a binary of this package, built beside the running test binary.
#[must_use]
pub fn sibling_exe(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().expect("current exe");
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// The plugins of this checkout, built for wasm32-wasip2.
pub mod guests {
    /// `counter.wasm`, the example plugin (`examples/counter`): increments
    /// a counter file N times under a lock.
    pub const COUNTER: &str = env!("GUEST_COUNTER");
    /// `locker.wasm`, the plugin peer (`tests/peers/plugins`): the line protocol.
    pub const LOCKER: &str = env!("GUEST_LOCKER");
    /// `holder.wasm` (`tests/peers/plugins`): holds a lock for a while.
    pub const HOLDER: &str = env!("GUEST_HOLDER");
    /// `legacy.wasm` (`tests/peers/plugins`): built against
    /// `locket:lock@0.1.0`, before `token`.
    pub const LEGACY: &str = env!("GUEST_LEGACY");
}

/// The plugin peer in JavaScript, `tests/peers/js-plugin/locker.js`, built
/// by the installed `locket-js build` ([`dist::locket_js`]) into
/// `js-guest/locker-js.wasm` beside the running binary: once per change of
/// its source or of the installed package, and written whole under a
/// temporary name first.
///
/// # Errors
///
/// If `locket-js` is not installed (`./test.sh` installs the npm package
/// into `target/js-env`) or the build fails.
pub fn js_plugin() -> anyhow::Result<PathBuf> {
    js_script_plugin(&root().join("tests/peers/js-plugin/locker.js"))
}

/// A JavaScript module built into a plugin by the installed `locket-js
/// build`, as [`js_plugin`] builds the peer: `js-guest/NAME.wasm` beside the
/// running binary.
///
/// # Errors
///
/// If `locket-js` is not installed or the build fails.
pub fn js_script_plugin(script: &Path) -> anyhow::Result<PathBuf> {
    let tool = dist::locket_js();
    anyhow::ensure!(
        tool.exists(),
        "{} is missing: ./test.sh installs the locket-guest npm package into target/js-env",
        tool.display()
    );
    built_plugin(
        script,
        "js-guest",
        "js",
        &[dist::npm_tarball()],
        |partial| {
            let mut command = Command::new(&tool);
            command.arg("build").arg(script).arg("-o").arg(partial);
            command
        },
    )
}

/// The `locket-host` binary built beside the running test (`./test.sh`
/// builds it, because the host crate has integration tests of its own).
///
/// # Panics
///
/// If it has not been built.
#[must_use]
pub fn host_exe() -> PathBuf {
    let exe = sibling_exe("locket-host");
    assert!(
        exe.exists(),
        "{} is missing: run ./test.sh, or `cargo build -p locket-host` first",
        exe.display()
    );
    exe
}

/// Runs `command` with `input` on its stdin, its stdout and stderr
/// captured, and waits for it.
///
/// # Panics
///
/// If it cannot be spawned, written to or waited for.
pub fn output_with_input(command: &mut Command, input: &str) -> std::process::Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Runs `plugin` under `locket-host run` (no grants) with `args`, and
/// `input` on its stdin; its output captured.
///
/// # Panics
///
/// As [`output_with_input`].
#[must_use]
pub fn run_plugin_with_input(plugin: &Path, args: &[&str], input: &str) -> std::process::Output {
    let mut command = host_command(&[], &plugin.to_string_lossy(), args);
    output_with_input(&mut command, input)
}

/// The number in the counter file `path`.
///
/// # Panics
///
/// If it cannot be read or holds no number.
#[must_use]
pub fn read_number(path: &Path) -> u64 {
    let text = std::fs::read_to_string(path).unwrap();
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{} holds {text:?}, not a number", path.display()))
}

/// The `locket` command (package `locket-cmd`) built beside the running test
/// (`./test.sh` builds it, because that crate has integration tests of its
/// own).
///
/// # Panics
///
/// If it has not been built.
#[must_use]
pub fn locket_exe() -> PathBuf {
    let exe = sibling_exe("locket");
    assert!(
        exe.exists(),
        "{} is missing: run ./test.sh, or `cargo build -p locket-cmd` first",
        exe.display()
    );
    exe
}

/// How many threads the kernel shows blocked waiting for the lock on `path`.
///
/// # Errors
///
/// If `path` or `/proc/locks` cannot be read.
pub fn lock_waiters(path: &Path) -> std::io::Result<usize> {
    locket::waiters(path).map(|w| w.len())
}

/// Waits until the kernel shows at least `n` threads blocked on `path`'s
/// lock, at most a minute.
///
/// # Errors
///
/// If they do not all wait within a minute, or `/proc/locks` cannot be read.
pub fn wait_for_waiters(path: &Path, n: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let waiting = lock_waiters(path)?;
        if waiting >= n {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "only {waiting} of {n} waiters on {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A scratch directory and the path of a lock file `x.lock` in it (not
/// created).
///
/// # Panics
///
/// If no temporary directory can be made.
#[must_use]
pub fn scratch() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let path = dir.path().join("x.lock");
    (dir, path)
}

/// `--dir=DIR::/data`: `dir` granted to a plugin as `/data`.
#[must_use]
pub fn grant(dir: &Path) -> String {
    format!("--dir={}::/data", dir.display())
}

/// How many entries the directory `dir` has (of `/proc/PID/fd`, say).
///
/// # Panics
///
/// If it cannot be read.
#[must_use]
pub fn entries(dir: impl AsRef<Path>) -> usize {
    let dir = dir.as_ref();
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .count()
}

/// How many POSIX timers process `pid` has (each timed kernel wait makes one).
///
/// # Panics
///
/// If `/proc/PID/timers` cannot be read.
#[must_use]
pub fn posix_timers(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/timers"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/timers: {e}"))
        .lines()
        .filter(|l| l.starts_with("ID:"))
        .count()
}

/// A `locket-host run` command with `host_args` before the plugin and
/// `plugin_args` after it. It uses a compilation cache shared by the tests,
/// so that each plugin is compiled once per build.
#[must_use]
pub fn host_command(host_args: &[&str], plugin: &str, plugin_args: &[&str]) -> Command {
    let exe = host_exe();
    let cache = exe.parent().expect("target dir").join("locket-test-cache");
    let mut command = Command::new(exe);
    command
        .env("LOCKET_CACHE_DIR", cache)
        .arg("run")
        .args(host_args)
        .arg(plugin)
        .args(plugin_args);
    command
}

/// `sh` running util-linux `flock(1)` around a shell increment of the number
/// in `data`, `n` times, each under the lock file `lock`.
#[must_use]
pub fn flock_incrementer(lock: &Path, data: &Path, n: u64) -> Command {
    let script = format!(
        "i=0; while [ $i -lt {n} ]; do \
           flock \"$0\" sh -c 'v=$(cat \"$1\"); echo $((v + 1)) > \"$1\"' sh \"$1\" || exit 1; \
           i=$((i + 1)); done"
    );
    let mut command = Command::new("sh");
    command.arg("-c").arg(script).arg(lock).arg(data);
    command
}

/// A native peer that adds 1 to the number in `data` `n` times, each under
/// the lock file `lock`, then exits (`locket-peer LOCK increment DATA N`).
#[must_use]
pub fn native_incrementer(lock: &Path, data: &Path, n: u64) -> Command {
    let mut command = native_peer_command(lock);
    command
        .arg("increment")
        .arg(data)
        .arg(n.to_string())
        .stdout(Stdio::null());
    command
}

/// A `counter.wasm` plugin under `locket-host` with `dir` granted as
/// `/data`, adding 1 to `/data/counter` `n` times under `/data/counter.lock`.
#[must_use]
pub fn plugin_incrementer(dir: &Path, n: u64) -> Command {
    host_command(
        &[&grant(dir)],
        guests::COUNTER,
        &["/data/counter.lock", "/data/counter", &n.to_string()],
    )
}

/// Starts the locker plugin holding `/data/x.lock` (with `host_args` before
/// it), has a native process wait for that lock, then ends the plugin with
/// `then`: a line for the plugin, or `signal NAME` for the host. Checks that
/// the waiter gets the lock and that the host exits with `code`, and returns
/// what the host wrote to stderr.
///
/// # Panics
///
/// If any of that does not happen.
#[must_use]
pub fn plugin_ends_and_frees(host_args: &[&str], then: &str, code: i32) -> String {
    let dir = tempfile::tempdir().unwrap();
    let grant = grant(dir.path());
    let mut args = vec![grant.as_str()];
    args.extend_from_slice(host_args);
    let mut command = host_command(&args, guests::LOCKER, &["/data/x.lock"]);
    let stderr_path = dir.path().join("stderr");
    command.stderr(std::fs::File::create(&stderr_path).unwrap());
    #[cfg(unix)]
    if then.starts_with("signal ") {
        // A shell without job control starts `cmd &` with SIGINT ignored,
        // and the host rightly keeps an ignored SIGINT ignored; the host
        // under test gets the default, as from a terminal.
        use std::os::unix::process::CommandExt;
        // SAFETY: signal(2) is async-signal-safe, and only resets two
        // dispositions in the child between fork and exec.
        unsafe {
            command.pre_exec(|| {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                libc::signal(libc::SIGTERM, libc::SIG_DFL);
                Ok(())
            });
        }
    }
    let mut plugin = LineProcess::spawn(command).unwrap();
    plugin.ask("acquire", "acquired").unwrap();
    let mut waiter = LineProcess::native(&dir.path().join("x.lock")).unwrap();
    waiter.send("acquire").unwrap();
    if let Some(signal) = then.strip_prefix("signal ") {
        let status = Command::new("kill")
            .args(["-s", signal, &plugin.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    } else {
        plugin.send(then).unwrap();
    }
    assert_eq!(
        waiter.line_within(PROMPT).unwrap(),
        "acquired",
        "after {then}"
    );
    assert_eq!(plugin.wait().unwrap().code(), Some(code), "after {then}");
    std::fs::read_to_string(&stderr_path).unwrap()
}
