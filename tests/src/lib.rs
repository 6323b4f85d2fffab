//! Support for the cross-process tests: real child processes driven by lines,
//! and the example guest plugins, built for wasm32-wasip2 by this crate's
//! build script.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use anyhow::{Context, bail};

/// How long a test waits for an answer that should come promptly. It is a
/// generous upper bound for a loaded 2-core machine, not a speed claim.
pub const PROMPT: Duration = Duration::from_secs(10);

/// A child process that reads commands on stdin and answers one line each.
pub struct LineProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    name: String,
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
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
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

    /// Spawns the `locket-helper` binary on `path`.
    ///
    /// # Errors
    ///
    /// As [`LineProcess::spawn`].
    pub fn helper(path: &Path) -> anyhow::Result<Self> {
        let mut command = Command::new(helper_exe());
        command.arg(path);
        Self::spawn(command)
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
        match self.lines.recv_timeout(within) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => bail!("{}: no answer within {within:?}", self.name),
            Err(RecvTimeoutError::Disconnected) => bail!("{}: closed its output", self.name),
        }
    }

    /// The next line, if one arrives within `within`, without failing if none does.
    #[must_use]
    pub fn maybe_line(&mut self, within: Duration) -> Option<String> {
        self.lines.recv_timeout(within).ok()
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
        let started = std::time::Instant::now();
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

/// The path of the `locket-helper` binary built beside the running test.
#[must_use]
pub fn helper_exe() -> std::path::PathBuf {
    sibling_exe("locket-helper")
}

/// The path of a binary of this package, built beside the running test binary.
#[must_use]
pub fn sibling_exe(name: &str) -> std::path::PathBuf {
    let mut dir = std::env::current_exe().expect("current exe");
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// The example guest plugins of this checkout, built for wasm32-wasip2.
pub mod guests {
    /// `counter.wasm`: increments a counter file N times under a lock.
    pub const COUNTER: &str = env!("GUEST_COUNTER");
    /// `locker.wasm`: acquires and releases as lines on stdin say.
    pub const LOCKER: &str = env!("GUEST_LOCKER");
    /// `holder.wasm`: holds a lock for a while.
    pub const HOLDER: &str = env!("GUEST_HOLDER");
}

/// The `locket-host` binary built beside the running test (`./test.sh`
/// builds it, because the host crate has integration tests of its own).
///
/// # Panics
///
/// If it has not been built.
#[must_use]
pub fn host_exe() -> std::path::PathBuf {
    let exe = sibling_exe("locket-host");
    assert!(
        exe.exists(),
        "{} is missing: run ./test.sh, or `cargo build -p locket-host` first",
        exe.display()
    );
    exe
}

/// How many processes or threads the kernel shows blocked waiting for the
/// lock on `path` (the `->` lines of `/proc/locks` for its inode).
///
/// # Errors
///
/// If `path` or `/proc/locks` cannot be read.
pub fn lock_waiters(path: &Path) -> std::io::Result<usize> {
    use std::os::unix::fs::MetadataExt;
    let inode = format!(":{}", std::fs::metadata(path)?.ino());
    let locks = std::fs::read_to_string("/proc/locks")?;
    Ok(locks
        .lines()
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1) == Some(&"->") && fields.get(6).is_some_and(|f| f.ends_with(&inode))
        })
        .count())
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

/// A native `locket` process (`locket-demo --worker`) that adds 1 to the
/// number in `data` `n` times, each under the lock file `lock`.
#[must_use]
pub fn native_incrementer(lock: &Path, data: &Path, n: u64) -> Command {
    let mut command = Command::new(sibling_exe("locket-demo"));
    command
        .arg("--worker")
        .arg(lock)
        .arg(data)
        .arg(n.to_string());
    command
}

/// A `counter.wasm` plugin under `locket-host` with `dir` granted as
/// `/data`, adding 1 to `/data/counter` `n` times under `/data/counter.lock`.
#[must_use]
pub fn plugin_incrementer(dir: &Path, n: u64) -> Command {
    host_command(
        &[&format!("--dir={}::/data", dir.display())],
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
    let grant = format!("--dir={}::/data", dir.path().display());
    let mut args = vec![grant.as_str()];
    args.extend_from_slice(host_args);
    let mut command = host_command(&args, guests::LOCKER, &["/data/x.lock"]);
    let stderr_path = dir.path().join("stderr");
    command.stderr(std::fs::File::create(&stderr_path).unwrap());
    let mut plugin = LineProcess::spawn(command).unwrap();
    plugin.ask("acquire", "acquired").unwrap();
    let mut waiter = LineProcess::helper(&dir.path().join("x.lock")).unwrap();
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
