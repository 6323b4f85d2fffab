//! Helpers for the processes the tests start: where the checkout and the
//! binaries are, the commands that start `locket-host` and the native peer,
//! running a command with input, counters in files, and the kernel's view of
//! a lock file's waiters and of a process's timers.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The root of this checkout.
#[must_use]
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the checkout")
        .to_path_buf()
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
    built_exe("locket", "locket-cmd")
}

/// The binary `name` of the workspace's package `package`, built beside the
/// running test; it panics, naming the build command, if it is missing.
fn built_exe(name: &str, package: &str) -> PathBuf {
    let exe = sibling_exe(name);
    assert!(
        exe.exists(),
        "{} is missing: run ./test.sh, or `cargo build -p {package}` first",
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

/// The `locket-host` binary built beside the running test (`./test.sh`
/// builds it, because the host crate has integration tests of its own).
///
/// # Panics
///
/// If it has not been built.
#[must_use]
pub fn host_exe() -> PathBuf {
    built_exe("locket-host", "locket-host")
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

/// The path of the native peer, `locket-peer`, built beside the running test.
#[must_use]
pub fn native_peer_exe() -> PathBuf {
    sibling_exe("locket-peer")
}

/// `locket-peer PATH`: the native peer on the lock file `path`.
pub(crate) fn native_peer_command(path: &Path) -> Command {
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
