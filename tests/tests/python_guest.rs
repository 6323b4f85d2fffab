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
