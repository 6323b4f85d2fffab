//! [`LineProcess`]: a peer or plugin process driven by lines on its stdin,
//! answering one line each.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::process::{host_command, native_peer_command};
use crate::timing::PROMPT;

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
