//! A guest from another toolchain: a Python plugin built by componentize-py
//! from `wit/` (world `plugin`), run unchanged by `locket-host`, contending
//! with native processes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use locket_tests::{LineProcess, PROMPT};

/// Builds tests/peers/python-plugin/locker.py into a component (once per
/// source change).
fn python_locker() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let source = root.join("tests/peers/python-plugin/locker.py");
    let out_dir = locket_tests::sibling_exe("x")
        .parent()
        .unwrap()
        .join("python-guest");
    std::fs::create_dir_all(&out_dir).unwrap();
    let wasm = out_dir.join("locker-py.wasm");
    let stale = |w: &Path| {
        let built = std::fs::metadata(w).and_then(|m| m.modified());
        let edited = std::fs::metadata(&source)
            .and_then(|m| m.modified())
            .unwrap();
        !matches!(built, Ok(b) if b > edited)
    };
    if stale(&wasm) {
        let tool = std::env::var_os("LOCKET_COMPONENTIZE_PY")
            .map_or_else(|| root.join(".venv/bin/componentize-py"), PathBuf::from);
        let partial = out_dir.join("locker-py.wasm.partial");
        let status = Command::new(&tool)
            .arg("-d")
            .arg(root.join("wit"))
            .args(["-w", "locket:lock/plugin", "componentize", "-p"])
            .arg(source.parent().unwrap())
            .args(["locker", "-o"])
            .arg(&partial)
            .status()
            .unwrap_or_else(|e| {
                panic!("{} is needed (./test.sh installs it): {e}", tool.display())
            });
        assert!(status.success(), "componentize-py failed");
        std::fs::rename(&partial, &wasm).unwrap();
    }
    wasm
}

#[test]
fn a_componentize_py_plugin_locks_beside_native_processes() {
    let wasm = python_locker();
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
