//! One conformance suite for every guest language: the same scenarios, run
//! against the Rust guest (`locker.wasm`, the Rust SDK), the Python guest
//! (`locker-py.wasm`, the Python SDK built by `locket-py build`) and the
//! JavaScript guest (`locker-js.wasm`, the JavaScript SDK built by
//! `locket-js build`), each under the real `locket-host`, against native
//! processes. All speak the line protocol of `tests/peers/README.md`.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use locket_tests::{LineProcess, PROMPT, grant, guests, host_command};

/// A guest language, and how to start its line-protocol plugin.
#[derive(Debug, Clone, Copy)]
enum Guest {
    Rust,
    Python,
    JavaScript,
}

const GUESTS: [Guest; 3] = [Guest::Rust, Guest::Python, Guest::JavaScript];

impl Guest {
    fn wasm(self) -> String {
        match self {
            Guest::Rust => guests::LOCKER.to_owned(),
            Guest::Python => locket_tests::python_plugin()
                .expect("the Python plugin peer")
                .display()
                .to_string(),
            Guest::JavaScript => locket_tests::js_plugin()
                .expect("the JavaScript plugin peer")
                .display()
                .to_string(),
        }
    }

    /// The plugin, with `dir` granted as `/data` and handle 0 on
    /// `/data/x.lock`, its stderr in `dir/NAME.stderr`.
    fn start(self, dir: &Path) -> LineProcess {
        self.start_with(dir, &[])
    }

    /// The same, with `host_args` for `locket-host run` too.
    fn start_with(self, dir: &Path, host_args: &[&str]) -> LineProcess {
        let grant = grant(dir);
        let mut args = vec![grant.as_str()];
        args.extend_from_slice(host_args);
        let mut command = host_command(&args, &self.wasm(), &["/data/x.lock"]);
        let stderr = dir.join(format!("{self:?}.stderr"));
        command.stderr(std::fs::File::create(stderr).unwrap());
        // A first run of the large Python plugin compiles it; give it time.
        LineProcess::spawn_within(command, PROMPT * 6).unwrap()
    }

    /// The line that makes the guest fail hard, and the exit code it gives:
    /// a trap (a Rust panic), or an uncaught exception in Python or
    /// JavaScript.
    fn crash(self) -> (&'static str, i32) {
        match self {
            Guest::Rust => ("trap", 134),
            Guest::Python => ("raise", 1),
            Guest::JavaScript => ("throw", 1),
        }
    }
}

fn native(dir: &Path) -> LineProcess {
    LineProcess::native(&dir.join("x.lock")).unwrap()
}

/// Runs `scenario` against each guest language, each in a scratch
/// directory of its own, and names the language that failed.
fn for_each_guest(scenario: impl Fn(Guest, &Path)) {
    for guest in GUESTS {
        let dir = tempfile::tempdir().unwrap();
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            scenario(guest, dir.path());
        }));
        if let Err(e) = run {
            eprintln!("the {guest:?} guest failed this scenario");
            std::panic::resume_unwind(e);
        }
    }
}

#[test]
fn exclusion_both_ways_with_a_native_process() {
    for_each_guest(|guest, dir| {
        let mut plugin = guest.start(dir);
        let mut peer = native(dir);
        plugin.ask("acquire", "acquired").unwrap();
        peer.ask("acquire 0", "error: timeout").unwrap();
        plugin.ask("release", "released").unwrap();
        peer.ask("acquire 0", "acquired").unwrap();
        plugin.ask("acquire 0", "error: timeout").unwrap();
        plugin.ask("acquire-shared 0", "error: timeout").unwrap();
        peer.ask("release", "released").unwrap();
    });
}

#[test]
fn hand_off_to_a_waiting_guest_with_and_without_a_timeout() {
    for_each_guest(|guest, dir| {
        let mut plugin = guest.start(dir);
        let mut peer = native(dir);
        for request in ["acquire", "acquire 60000", "acquire-shared"] {
            peer.ask("acquire", "acquired").unwrap();
            plugin.send(request).unwrap();
            locket_tests::wait_for_waiters(&dir.join("x.lock"), 1).unwrap();
            peer.ask("release", "released").unwrap();
            assert_eq!(plugin.line_within(PROMPT).unwrap(), "acquired", "{request}");
            plugin.ask("release", "released").unwrap();
        }
    });
}

#[test]
fn timeout_zero_tries_once_and_a_timeout_expires() {
    for_each_guest(|guest, dir| {
        let mut plugin = guest.start(dir);
        let mut peer = native(dir);
        peer.ask("acquire", "acquired").unwrap();
        plugin.ask("acquire 0", "error: timeout").unwrap();
        // A timeout is in the SDK's own unit (ms here): it waits that long,
        // never less, before it gives up.
        for request in ["acquire 300", "acquire-shared 300"] {
            let started = Instant::now();
            plugin.ask(request, "error: timeout").unwrap();
            let waited = started.elapsed();
            assert!(
                waited >= Duration::from_millis(300),
                "{request} gave up after {waited:?}"
            );
        }
        plugin.ask("is-locked", "false").unwrap();
        // A longer timeout outlasts a holder that lets go before it ends.
        plugin.send("acquire 20000").unwrap();
        locket_tests::wait_for_waiters(&dir.join("x.lock"), 1).unwrap();
        std::thread::sleep(Duration::from_millis(500));
        peer.ask("release", "released").unwrap();
        assert_eq!(plugin.line_within(PROMPT).unwrap(), "acquired");
        plugin.ask("release", "released").unwrap();
        plugin.ask("acquire 0", "acquired").unwrap();
    });
}

#[test]
fn release_of_nothing_is_not_locked_and_a_second_acquire_is_a_deadlock() {
    for_each_guest(|guest, dir| {
        let mut plugin = guest.start(dir);
        plugin.ask("release", "error: not-locked").unwrap();
        plugin.ask("acquire", "acquired").unwrap();
        plugin.ask("is-locked", "true").unwrap();
        // The same handle again: not reentrant, whatever the timeout.
        plugin.ask("acquire", "error: deadlock").unwrap();
        // Another handle of the same instance, on the same file.
        plugin.ask("open /data/x.lock", "opened 1").unwrap();
        plugin.ask("#1 acquire", "error: deadlock").unwrap();
        plugin
            .ask("#1 acquire-shared 0", "error: deadlock")
            .unwrap();
        plugin.ask("#1 release", "error: not-locked").unwrap();
        plugin.ask("release", "released").unwrap();
        plugin.ask("release", "error: not-locked").unwrap();
        plugin.ask("#1 acquire 0", "acquired").unwrap();
        // A file lock has no fencing token.
        plugin.ask("#1 token", "token none").unwrap();
    });
}

#[test]
fn shared_locks_admit_each_other_and_exclude_exclusive_ones() {
    for_each_guest(|guest, dir| {
        let mut plugin = guest.start(dir);
        let mut peer = native(dir);
        plugin.ask("acquire-shared", "acquired").unwrap();
        peer.ask("acquire-shared 0", "acquired").unwrap();
        peer.ask("release", "released").unwrap();
        peer.ask("acquire 0", "error: timeout").unwrap();
        // Two shared handles in one instance coexist too.
        plugin.ask("open /data/x.lock", "opened 1").unwrap();
        plugin.ask("#1 acquire-shared 0", "acquired").unwrap();
        plugin.ask("release", "released").unwrap();
        plugin.ask("#1 release", "released").unwrap();
        peer.ask("acquire 0", "acquired").unwrap();
    });
}

#[test]
fn the_sandbox_refuses_paths_outside_the_grants() {
    for_each_guest(|guest, dir| {
        let mut plugin = guest.start(dir);
        for (path, answer) in [
            ("/etc/passwd", "error: access-denied"),
            ("/data/../etc/passwd", "error: access-denied"),
            ("relative.lock", "error: access-denied"),
            ("/database/x.lock", "error: access-denied"),
        ] {
            plugin
                .ask(&format!("open {path}"), answer)
                .unwrap_or_else(|e| panic!("{path}: {e}"));
        }
        plugin.ask("open", "error: invalid-path").unwrap();
        // A directory cannot be locked; the refusal comes at the acquire.
        std::fs::create_dir(dir.join("sub")).unwrap();
        plugin.ask("open /data/sub", "opened 1").unwrap();
        plugin.ask("#1 acquire", "error: invalid-path").unwrap();
        // A symlink that leads out of the grant is refused at the acquire.
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path().join("escaped.lock"), dir.join("link.lock"))
            .unwrap();
        plugin.ask("open /data/link.lock", "opened 2").unwrap();
        plugin.ask("#2 acquire", "error: access-denied").unwrap();
        assert_eq!(
            std::fs::read_dir(outside.path()).unwrap().count(),
            0,
            "made a file outside"
        );
        let mut made: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        made.sort();
        assert_eq!(
            made,
            [
                format!("{guest:?}.stderr"),
                "link.lock".into(),
                "sub".into()
            ]
        );
    });
}

#[test]
fn exit_and_a_crash_while_holding_free_the_lock() {
    for_each_guest(|guest, dir| {
        let (crash, crash_code) = guest.crash();
        for (line, code) in [("exit 0", 0), ("exit 3", 3), (crash, crash_code)] {
            let mut plugin = guest.start(dir);
            plugin.ask("acquire", "acquired").unwrap();
            let mut peer = native(dir);
            peer.ask("acquire 0", "error: timeout").unwrap();
            plugin.send(line).unwrap();
            assert_eq!(plugin.wait().unwrap().code(), Some(code), "after {line:?}");
            peer.ask("acquire 0", "acquired").unwrap();
        }
    });
}

#[test]
fn a_trap_while_holding_frees_the_lock() {
    // The host's memory cap turns a guest that allocates without bound into
    // a trap, whatever its language.
    for_each_guest(|guest, dir| {
        let mut plugin = guest.start_with(dir, &["--max-memory=256M"]);
        plugin.ask("acquire", "acquired").unwrap();
        plugin.send("alloc").unwrap();
        assert_eq!(plugin.wait().unwrap().code(), Some(134));
        native(dir).ask("acquire 0", "acquired").unwrap();
        let stderr = std::fs::read_to_string(dir.join(format!("{guest:?}.stderr"))).unwrap();
        assert!(stderr.contains("memory limit"), "{stderr}");
    });
}

#[test]
fn a_mixed_counter_of_every_guest_and_native_processes_loses_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("counter");
    std::fs::write(&data, "0\n").unwrap();
    let n = 40u64;
    let mut plugins: Vec<LineProcess> = GUESTS.iter().map(|g| g.start(dir.path())).collect();
    let mut natives: Vec<_> = (0..2)
        .map(|_| {
            locket_tests::native_incrementer(&dir.path().join("x.lock"), &data, n)
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for p in &mut plugins {
        p.send(&format!("increment /data/counter {n}")).unwrap();
    }
    for p in &mut plugins {
        p.expect(&format!("incremented {n}")).unwrap();
    }
    for c in &mut natives {
        assert!(c.wait().unwrap().success());
    }
    assert_eq!(locket_tests::read_number(&data), 5 * n, "lost updates");
}
