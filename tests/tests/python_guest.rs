//! A guest from another toolchain: a Python plugin built by componentize-py
//! from `wit/` (world `plugin`), run unchanged by `locket-host`, contending
//! with native processes.

use std::path::Path;
use std::time::Duration;

use locket_tests::{LineProcess, PROMPT};

#[test]
fn a_componentize_py_plugin_locks_beside_native_processes() {
    let wasm = locket_tests::python_plugin().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let grant = format!("--dir={}::/data", dir.path().display());
    let start = |p: &Path| {
        let mut command =
            locket_tests::host_command(&[&grant], p.to_str().unwrap(), &["/data/x.lock"]);
        command.stderr(std::process::Stdio::inherit());
        // The first run compiles 18 MB of wasm; give it time.
        LineProcess::spawn_within(command, Duration::from_secs(600)).unwrap()
    };
    let mut plugin = start(&wasm);
    let mut native = LineProcess::native(&dir.path().join("x.lock")).unwrap();

    plugin.ask("acquire", "acquired").unwrap();
    native.ask("acquire 0", "error: timeout").unwrap();
    plugin.ask("acquire 0", "error: deadlock").unwrap();
    native.send("acquire").unwrap();
    plugin.ask("release", "released").unwrap();
    assert_eq!(native.line_within(PROMPT).unwrap(), "acquired");
    plugin.ask("acquire 0", "error: timeout").unwrap();
    plugin.send("acquire-shared").unwrap();
    native.ask("release", "released").unwrap();
    assert_eq!(plugin.line_within(PROMPT).unwrap(), "acquired");
    plugin.ask("release", "released").unwrap();
    plugin.ask("release", "error: not-locked").unwrap();
    plugin.ask("is-locked", "false").unwrap();
}

/// A script written for Python's locket (locket.py 1.0.0), not edited in any
/// line, becomes a plugin with `locket-py build`; the plugin and the same
/// script under CPython with locket.py, and the Rust crate, share one
/// counter with no lost update.
#[test]
fn a_script_written_for_locket_py_runs_unchanged_as_a_plugin() {
    let script = locket_tests::root().join("examples/counter-py/counter.py");
    let wasm = locket_tests::python_script_plugin(&script).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (lock, data) = (dir.path().join("c.lock"), dir.path().join("counter"));
    std::fs::write(&data, "0\n").unwrap();
    let grant = format!("--dir={}::/data", dir.path().display());
    let n = 30;
    let mut plugin = locket_tests::host_command(
        &[&grant],
        wasm.to_str().unwrap(),
        &["/data/c.lock", "/data/counter", &n.to_string()],
    );
    let plugin = plugin.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let python = locket_tests::venv_python().expect(".venv (./test.sh makes it)");
    let cpython = std::process::Command::new(python)
        .arg(&script)
        .arg(&lock)
        .arg(&data)
        .arg(n.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut rust = locket_tests::native_incrementer(&lock, &data, n)
        .spawn()
        .unwrap();
    for (who, child) in [("plugin", plugin), ("CPython", cpython)] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "the {who} run failed: {:?}",
            out.status
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("counted {n}\n"),
            "{who}"
        );
    }
    assert!(rust.wait().unwrap().success());
    assert_eq!(locket_tests::read_number(&data), 3 * n, "lost updates");
}

/// A plugin built from a script gets CPython's conventions: `sys.argv`,
/// stdin and stdout, `sys.exit(n)` as the exit code, and an uncaught
/// exception's traceback with exit code 1.
#[test]
fn a_script_plugin_has_argv_stdio_and_exit_codes_as_in_cpython() {
    let script = locket_tests::root().join("tests/peers/python-scripts/script.py");
    let wasm = locket_tests::python_script_plugin(&script).unwrap();
    let run = |args: &[&str], input: &str| locket_tests::run_plugin_with_input(&wasm, args, input);
    let out = run(&["3", "two words"], "hello\nworld\n");
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "argv 3 two words\necho HELLO\necho WORLD\n"
    );
    let out = run(&["0"], "");
    assert_eq!(out.status.code(), Some(0));
    let out = run(&["raise"], "");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Traceback") && stderr.contains("ValueError: raised on purpose"),
        "{stderr}"
    );
    // SystemExit's other values, as CPython maps them (a bool is an int).
    for (arg, code) in [("none", 0), ("false", 0), ("true", 1), ("huge", 255)] {
        let out = run(&[arg], "");
        assert_eq!(out.status.code(), Some(code), "sys.exit({arg})");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "sys.exit({arg})");
    }
    let out = run(&["message"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("a message for stderr"));
}
