//! The plugins: the Rust ones this crate's build script makes ([`guests`]),
//! the Python and JavaScript ones built with the installed SDK packages
//! ([`dist`]), and running them under `locket-host`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::Context;

use crate::line_process::LineProcess;
use crate::process::{grant, host_command, output_with_input, root, sibling_exe};
use crate::timing::PROMPT;

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
/// `py-guest/locker-py.wasm` beside the running binary: once per change
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
/// as [`python_plugin`] builds the peer: `py-guest/NAME-py.wasm` beside the
/// running binary, rebuilt when the script or the installed wheel changed.
///
/// # Errors
///
/// If `locket-py` is not installed or the build fails.
pub fn python_script_plugin(script: &Path) -> anyhow::Result<PathBuf> {
    built_plugin(script, Sdk::Python)
}

/// A guest SDK package that the tests build plugins with, as installed by
/// `./test.sh`.
#[derive(Debug, Clone, Copy)]
enum Sdk {
    Python,
    JavaScript,
}

impl Sdk {
    /// The short name, in the plugins' file names.
    fn language(self) -> &'static str {
        match self {
            Self::Python => "py",
            Self::JavaScript => "js",
        }
    }

    /// The installed build command, and the package file it came from.
    fn tool_and_package(self) -> (PathBuf, PathBuf) {
        match self {
            Self::Python => (dist::locket_py(), dist::wheel()),
            Self::JavaScript => (dist::locket_js(), dist::npm_tarball()),
        }
    }
}

/// `LANGUAGE-guest/NAME-LANGUAGE.wasm` beside the running binary, built
/// from `script` by `TOOL build SCRIPT -o PARTIAL` (the installed
/// `locket-py` or `locket-js`) unless it is newer than the script and the
/// package file that the tool was installed from. The build writes a
/// partial file of this process's own, renamed into place when done.
fn built_plugin(script: &Path, sdk: Sdk) -> anyhow::Result<PathBuf> {
    let (tool, package) = sdk.tool_and_package();
    let language = sdk.language();
    anyhow::ensure!(
        tool.exists(),
        "{} is missing: ./test.sh installs it from {}",
        tool.display(),
        package.display()
    );
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
        .join(format!("{language}-guest"));
    std::fs::create_dir_all(&out_dir)?;
    let wasm = out_dir.join(format!("{name}-{language}.wasm"));
    let edited = std::fs::metadata(script)?
        .modified()?
        .max(std::fs::metadata(&package)?.modified()?);
    let built = std::fs::metadata(&wasm).and_then(|m| m.modified());
    if matches!(built, Ok(built) if built > edited) {
        return Ok(wasm);
    }
    let partial = out_dir.join(format!(
        "{name}-{language}.wasm.{}.partial",
        std::process::id()
    ));
    let mut command = Command::new(&tool);
    command.arg("build").arg(script).arg("-o").arg(&partial);
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
/// build`, as [`js_plugin`] builds the peer: `js-guest/NAME-js.wasm` beside the
/// running binary.
///
/// # Errors
///
/// If `locket-js` is not installed or the build fails.
pub fn js_script_plugin(script: &Path) -> anyhow::Result<PathBuf> {
    built_plugin(script, Sdk::JavaScript)
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
