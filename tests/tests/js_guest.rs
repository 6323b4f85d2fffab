//! JavaScript plugins built by `locket-js build` (the installed
//! `locket-guest` npm package, with the JavaScript SDK), under the real
//! `locket-host`. The line-protocol peer runs in `conformance.rs`.

use std::process::Stdio;

use locket_tests::{grant, host_command, js_script_plugin, native_incrementer, read_number, root};

#[test]
fn a_js_counter_shares_a_counter_with_native_processes() {
    let wasm = js_script_plugin(&root().join("examples/counter-js/counter.js")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("counter");
    std::fs::write(&data, "0\n").unwrap();
    let n = 30;
    let plugins: Vec<_> = (0..2)
        .map(|_| {
            host_command(
                &[&grant(dir.path())],
                wasm.to_str().unwrap(),
                &["/data/counter.lock", "/data/counter", &n.to_string()],
            )
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let mut native = native_incrementer(&dir.path().join("counter.lock"), &data, n)
        .spawn()
        .unwrap();
    for plugin in plugins {
        let out = plugin.wait_with_output().unwrap();
        assert!(out.status.success(), "{:?}", out.status);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("counted {n}\n")
        );
    }
    assert!(native.wait().unwrap().success());
    assert_eq!(read_number(&data), 3 * n, "lost updates");
}

#[test]
fn a_js_plugin_has_its_arguments_stdio_and_exit_code() {
    let wasm = js_script_plugin(&root().join("tests/peers/js-scripts/script.js")).unwrap();
    let run = |args: &[&str], input: &str| locket_tests::run_plugin_with_input(&wasm, args, input);
    let out = run(&["3", "two words"], "hello\nworld\n");
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "argv 3 two words\necho HELLO\necho WORLD\n"
    );
    assert_eq!(run(&["0"], "").status.code(), Some(0));
    let out = run(&["throw"], "");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("thrown on purpose"), "{stderr}");
}
