//! `locket-host run` as a command: exit codes, and one-line errors for bad
//! input of every kind.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use locket_tests::{guests, host_command, host_exe};

/// Tiny WebAssembly files for the load errors, in binary form, each under the
/// text it was assembled from (by `wat`, which is not a dependency: its
/// `memchr` features would make `cargo test` rebuild wasmtime).
mod wasm {
    /// `(module)`
    pub const CORE_MODULE: &[u8] = b"\0asm\x01\0\0\0";
    /// `(component)`
    pub const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";
    /// `(component (import "acme:nope/thing@1.0.0" (instance (export "f" (func)))))`
    pub const UNKNOWN_IMPORT: &[u8] = b"\0asm\x0d\0\x01\0\
        \x07\x0e\x01\x42\x02\x01\x40\x00\x01\x00\x04\x00\x01f\x01\x00\
        \x0a\x1a\x01\x00\x15acme:nope/thing@1.0.0\x05\x00";
    /// `(component (import "locket:lock/locket@0.2.0"
    ///     (instance (export "lock-file" (func (param "path" string))))))`
    /// A component (hand-written, not from Rust) whose `run` returns an error:
    ///
    /// ```text
    /// (component
    ///   (core module $m (func (export "run") (result i32) i32.const 1))
    ///   (core instance $i (instantiate $m))
    ///   (func $run (result (result)) (canon lift (core func $i "run")))
    ///   (instance $cli (export "run" (func $run)))
    ///   (export "wasi:cli/run@0.2.0" (instance $cli)))
    /// ```
    pub const RUN_ERROR: &[u8] = b"\x00asm\x0d\x00\x01\x00\x01/\x00asm\x01\x00\x00\x00\x01\x05\x01\x60\x00\x01\x7f\x03\x02\x01\x00\x07\x07\x01\x03run\x00\x00\x0a\x06\x01\x04\x00A\x01\x0b\x00\x09\x04name\x00\x02\x01m\x02\x04\x01\x00\x00\x00\x07\x08\x02j\x00\x00@\x00\x00\x00\x06\x09\x01\x00\x00\x01\x00\x03run\x08\x06\x01\x00\x00\x00\x00\x01\x05\x0a\x01\x01\x01\x00\x03run\x01\x00\x0b\x18\x01\x00\x12wasi:cli/run@0.2.0\x05\x00\x00\x001\x0ecomponent-name\x01\x06\x00\x11\x01\x00\x01m\x01\x06\x00\x12\x01\x00\x01i\x01\x07\x01\x01\x00\x03run\x01\x07\x05\x01\x00\x03cli";
    pub const NEWER_LOCKET: &[u8] = b"\0asm\x0d\0\x01\0\
        \x07\x1c\x01\x42\x02\x01\x40\x01\x04path\x73\x01\x00\x04\x00\x09lock-file\x01\x00\
        \x0a\x1d\x01\x00\x18locket:lock/locket@0.2.0\x05\x00";
}

fn run(host_args: &[&str], plugin: &str, plugin_args: &[&str]) -> Output {
    host_command(host_args, plugin, plugin_args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A load or validation error: exit code 2 and one line naming the problem.
fn assert_load_error(out: &Output, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("locket-host: error: "), "{err}");
    assert!(err.contains(needle), "{needle:?} not in {err}");
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn bad_plugin_files_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let locker = std::fs::read(guests::LOCKER).unwrap();
    let cases: Vec<(String, &str)> = vec![
        (
            d.join("missing.wasm").to_str().unwrap().to_owned(),
            "cannot read",
        ),
        (d.to_str().unwrap().to_owned(), "is a directory"),
        (write(d, "empty.wasm", b""), "not a WebAssembly file"),
        (
            write(d, "random.wasm", &[0x5a; 1000]),
            "not a WebAssembly file",
        ),
        (
            write(d, "core.wasm", wasm::CORE_MODULE),
            "core WebAssembly module",
        ),
        (
            write(d, "truncated.wasm", &locker[..locker.len() / 2]),
            "not a valid component",
        ),
        (
            write(d, "unknown-import.wasm", wasm::UNKNOWN_IMPORT),
            "acme:nope/thing",
        ),
        (
            write(d, "no-run.wasm", wasm::EMPTY_COMPONENT),
            "wasi:cli/run",
        ),
        (
            write(d, "newer-locket.wasm", wasm::NEWER_LOCKET),
            "locket:lock/locket@0.2.0",
        ),
    ];
    for (plugin, needle) in cases {
        assert_load_error(&run(&[], &plugin, &[]), needle);
    }
}

#[test]
fn bad_flags_exit_2_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "file", b"");
    for (args, needle) in [
        (vec!["run"], "PLUGIN.wasm"),
        (vec!["run", "--bogus", guests::LOCKER], "--bogus"),
        (
            vec!["run", "--timeout=banana", guests::LOCKER],
            "invalid duration",
        ),
        (
            vec!["run", "--timeout=-1s", guests::LOCKER],
            "invalid duration",
        ),
        (vec!["run", "--max-locks=many", guests::LOCKER], "many"),
        (
            vec!["run", "--dir=/no/such/dir::/data", guests::LOCKER],
            "/no/such/dir",
        ),
        (
            vec!["run", &format!("--dir={file}::/data"), guests::LOCKER],
            "not a directory",
        ),
        (vec!["run", "--env==x", guests::LOCKER], "NAME[=VAL]"),
        (vec!["frobnicate"], "frobnicate"),
    ] {
        let out = Command::new(host_exe()).args(&args).output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {needle:?} not in {err}");
    }
}

#[test]
fn help_explains_every_flag_with_an_example() {
    let out = Command::new(host_exe())
        .args(["run", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--dir ",
        "--dir-ro",
        "--env",
        "--timeout",
        "--max-locks",
        "--no-cache",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    assert!(help.matches("Example").count() >= 6, "{help}");
}

#[test]
fn the_guests_exit_status_is_the_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let grant = format!("--dir={}::/data", dir.path().display());
    for (line, code) in [
        ("exit 0", 0),
        ("exit 3", 3),
        ("exit 255", 255),
        ("std-exit 0", 0),
        ("std-exit 5", 1), // WASI 0.2's exit(err) carries no number
        ("trap", 134),
    ] {
        let mut child = host_command(&[&grant], guests::LOCKER, &[])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        writeln!(child.stdin.take().unwrap(), "{line}").unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(code), "{line}: {}", stderr(&out));
        if code == 134 {
            assert!(
                stderr(&out).contains("the plugin trapped"),
                "{}",
                stderr(&out)
            );
        }
    }
    // A component (hand-written, not from Rust) whose `run` returns an error.
    let run_err = write(dir.path(), "run-err.wasm", wasm::RUN_ERROR);
    assert_eq!(run(&[], &run_err, &[]).status.code(), Some(1));
    // A plugin whose main returns normally, and one whose usage error is exit(2).
    assert_eq!(run(&[&grant], guests::LOCKER, &[]).status.code(), Some(0));
    assert_eq!(run(&[&grant], guests::COUNTER, &[]).status.code(), Some(2));
}

#[test]
fn the_compilation_cache_can_be_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let grant = format!("--dir={}::/data", dir.path().display());
    let out = run(&[&grant, "--no-cache"], guests::LOCKER, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // With a fresh cache directory, the first run fills it.
    let cache = tempfile::tempdir().unwrap();
    let out = host_command(&[&grant, "--compiler=cranelift"], guests::LOCKER, &[])
        .env("LOCKET_CACHE_DIR", cache.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut entries = 0;
    let mut stack = vec![cache.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                entries += 1;
            }
        }
    }
    assert!(
        entries > 0,
        "nothing was cached in {}",
        cache.path().display()
    );
}

#[test]
fn tracing_is_silent_unless_asked_and_stats_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let grant = format!("--dir={}::/data", dir.path().display());
    let script = "acquire\nrelease\nacquire-shared 0\nopen /etc/x\nopen /data/y.lock\n#1 acquire\n#1 acquire 0\n";
    let run_with = |extra: &[&str], rust_log: Option<&str>| {
        let mut args = vec![grant.as_str()];
        args.extend_from_slice(extra);
        let mut c = host_command(&args, guests::LOCKER, &["/data/x.lock"]);
        c.env_remove("RUST_LOG");
        if let Some(filter) = rust_log {
            c.env("RUST_LOG", filter);
        }
        let out = locket_tests::output_with_input(&mut c, script);
        assert!(out.status.success());
        stderr(&out)
    };
    assert_eq!(
        run_with(&[], None),
        "",
        "something was printed without RUST_LOG"
    );
    let log = run_with(&[], Some("locket=debug"));
    for needle in [
        "acquired",
        "released",
        "waited_us",
        "lock-file refused",
        "/data/y.lock",
    ] {
        assert!(log.contains(needle), "{needle:?} not in {log}");
    }
    let stats = run_with(&["--stats"], None);
    assert!(
        stats.contains("2 handles, 3 acquired, 0 timed out, 1 failed, 1 released"),
        "{stats}"
    );
}

/// `locket-host compile` and `run --allow-precompiled`: the artifact runs only
/// when allowed, and one made with other options or damaged is refused with
/// one line, never loaded.
#[test]
fn precompiled_plugins_run_only_when_allowed_and_matching() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let grant = format!("--dir={}::/data", d.display());
    let compile = |extra: &[&str], plugin: &str, out: &Path| {
        Command::new(host_exe())
            .arg("compile")
            .args(extra)
            .arg(plugin)
            .arg("-o")
            .arg(out)
            .output()
            .unwrap()
    };
    let artifact = d.join("locker.cwasm");
    let out = compile(&[], guests::LOCKER, &artifact);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let bytes = std::fs::read(&artifact).unwrap();
    assert!(bytes.starts_with(b"\x7fELF"), "not an ELF artifact");
    let artifact_arg = artifact.to_str().unwrap();

    // Refused without the flag; runs with it, with or without --timeout.
    let out = run(&[&grant], artifact_arg, &[]);
    assert_load_error(&out, "--allow-precompiled");
    for extra in [&[][..], &["--timeout", "60s"][..]] {
        let mut args = vec![grant.as_str(), "--allow-precompiled"];
        args.extend_from_slice(extra);
        let out = run(&args, artifact_arg, &["/data/x.lock"]);
        assert_eq!(out.status.code(), Some(0), "{extra:?}: {}", stderr(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ready\n");
    }

    // Compiled for fuel metering: refused without --fuel, runs with it.
    let fueled = d.join("fueled.cwasm");
    let out = compile(&["--fuel"], guests::LOCKER, &fueled);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let fueled = fueled.to_str().unwrap();
    let out = run(&[&grant, "--allow-precompiled"], fueled, &[]);
    assert_load_error(&out, "recompile it with `locket-host compile PLUGIN.wasm");
    let out = run(
        &[&grant, "--allow-precompiled", "--fuel", "1000000000"],
        fueled,
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // And the plain artifact is refused under --fuel.
    let out = run(
        &[&grant, "--allow-precompiled", "--fuel", "1000"],
        artifact_arg,
        &[],
    );
    assert_load_error(&out, "recompile it with `locket-host compile --fuel");

    // Damaged or foreign artifacts are refused.
    let truncated = write(d, "truncated.cwasm", &bytes[..bytes.len() / 2]);
    let out = run(&[&grant, "--allow-precompiled"], &truncated, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let foreign = write(d, "true.cwasm", &std::fs::read("/bin/true").unwrap());
    let out = run(&[&grant, "--allow-precompiled"], &foreign, &[]);
    assert_load_error(&out, "not a precompiled component");

    // compile refuses what it cannot compile.
    let junk = write(d, "junk.wasm", b"not wasm at all");
    let out = compile(&[], &junk, &d.join("junk.cwasm"));
    assert_load_error(&out, "is not a WebAssembly file");
    assert!(!d.join("junk.cwasm").exists());
    let out = compile(&[], artifact_arg, &d.join("again.cwasm"));
    assert_load_error(&out, "already a precompiled artifact");

    // A pipe or a directory is refused at once, never waited on.
    let fifo = d.join("plugin.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let out = run(&[&grant], fifo.to_str().unwrap(), &[]);
    assert_load_error(&out, "not a regular file");
}

/// A first run (nothing in the cache) runs Winch's code and leaves Cranelift
/// compiling into the cache; the runs after map Cranelift's code. `--fuel`
/// needs Cranelift's code, which meters it.
#[test]
fn a_first_run_uses_winch_while_cranelift_compiles_into_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let grant = format!("--dir={}::/data", dir.path().display());
    let cache = tempfile::tempdir().unwrap();
    let run_stats = |args: &[&str]| {
        let mut all = vec![grant.as_str(), "--stats"];
        all.extend_from_slice(args);
        let out = host_command(&all, guests::LOCKER, &[])
            .env("LOCKET_CACHE_DIR", cache.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "{err}");
        err
    };
    let first = run_stats(&[]);
    assert!(
        first.contains("code: Winch, compiled for this run (Cranelift compiles into the cache"),
        "{first}"
    );
    // The background compile ends by renaming its entry into place.
    let started = std::time::Instant::now();
    let entry = loop {
        let found = std::fs::read_dir(cache.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "cwasm"));
        if let Some(entry) = found {
            break entry;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the background compile never filled {}",
            cache.path().display()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(std::fs::metadata(&entry).unwrap().len() > 1000);
    let later = run_stats(&[]);
    assert!(later.contains("code: Cranelift, from the cache"), "{later}");
    let winch = run_stats(&["--compiler=winch"]);
    assert!(
        winch.contains("code: Winch, compiled for this run"),
        "{winch}"
    );
    // Fuel: Cranelift, also for a first run (fuel has cache entries of its own).
    let fuel = run_stats(&["--fuel=100000000"]);
    assert!(
        fuel.contains("code: Cranelift, compiled for this run"),
        "{fuel}"
    );
    let out = host_command(
        &[&grant, "--compiler=winch", "--fuel=1000"],
        guests::LOCKER,
        &[],
    )
    .stdin(Stdio::null())
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--fuel needs Cranelift's code"),
        "{}",
        stderr(&out)
    );
}

/// The run cache holds precompiled artifacts keyed by the plugin: the second
/// run maps it, a damaged entry is replaced, and a directory other users may
/// write to is not used.
#[test]
fn the_cache_holds_precompiled_artifacts_and_replaces_damaged_ones() {
    let dir = tempfile::tempdir().unwrap();
    let grant = format!("--dir={}::/data", dir.path().display());
    let cache = tempfile::tempdir().unwrap();
    // Runs the plugin with `cache`; it must succeed and log `said`.
    let run_cached = |cache: &Path, said: &str| {
        let out = host_command(&[&grant, "--compiler=cranelift"], guests::LOCKER, &[])
            .env("LOCKET_CACHE_DIR", cache)
            .env("RUST_LOG", "locket_host=debug")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "{err}");
        assert!(err.contains(said), "{said:?} not in {err}");
    };
    let entries = |cache: &Path| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(cache)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    };
    run_cached(cache.path(), "cached the compiled plugin");
    let cached = entries(cache.path());
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(
        cached[0].extension().is_some_and(|e| e == "cwasm"),
        "{cached:?}"
    );

    run_cached(cache.path(), "loaded the plugin from the cache");

    std::fs::write(&cached[0], b"\x7fELF damaged").unwrap();
    run_cached(cache.path(), "unusable cache entry");
    assert!(
        std::fs::read(&cached[0]).unwrap().len() > 1000,
        "not replaced"
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // World- or group-writable directories are refused.
        let open = tempfile::tempdir().unwrap();
        for mode in [0o777, 0o770] {
            std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(mode)).unwrap();
            run_cached(open.path(), "other users may write to it");
            assert!(entries(open.path()).is_empty());
        }

        // An entry that is a symlink is never mapped: the plugin is compiled
        // again and the symlink replaced by a regular file.
        let elsewhere = cache.path().join("elsewhere.bin");
        std::fs::rename(&cached[0], &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &cached[0]).unwrap();
        run_cached(cache.path(), "cached the compiled plugin");
        assert!(
            !std::fs::symlink_metadata(&cached[0])
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }
}
