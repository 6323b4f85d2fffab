//! The native `locket` command, against native peers, flock(1) and plugins.

use std::path::Path;
use std::process::{Command, Output};

use locket_tests::{LineProcess, Peer, locket_exe};

fn locket() -> Command {
    Command::new(locket_exe())
}

/// `locket lock ARGS... PATH -- sh -c SCRIPT` as a line process (SCRIPT
/// should `echo ready` first).
fn holding(path: &Path, args: &[&str], script: &str) -> LineProcess {
    let mut c = locket();
    c.arg("lock")
        .args(args)
        .arg(path)
        .args(["--", "sh", "-c", script]);
    LineProcess::spawn(c).unwrap()
}

fn run(args: &[&str]) -> Output {
    locket().args(args).output().unwrap()
}

#[test]
fn the_lock_is_held_while_the_command_runs_and_released_after() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.lock");
    let mut held = holding(&path, &[], "echo ready; read line; exit 0");
    LineProcess::native(&path)
        .unwrap()
        .ask("acquire 0", "error: timeout")
        .unwrap();
    let flock = Command::new("flock")
        .args(["-n", "-E", "75"])
        .arg(&path)
        .arg("true")
        .status()
        .unwrap();
    assert_eq!(
        flock.code(),
        Some(75),
        "flock(1) got in while locket held the lock"
    );
    let mut plugin = Peer::Plugin.start(dir.path(), "x.lock").unwrap();
    plugin.ask("acquire 0", "error: timeout").unwrap();
    held.send("go").unwrap();
    assert_eq!(held.wait().unwrap().code(), Some(0));
    plugin.ask("acquire 0", "acquired").unwrap();
}

#[test]
fn it_waits_for_holders_of_every_kind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.lock");
    let p = path.to_str().unwrap();
    // A plugin holds it: -w 0 fails with the conflict code, then a waiter
    // without -w gets it once the plugin lets go.
    let mut plugin = Peer::Plugin.start(dir.path(), "x.lock").unwrap();
    plugin.ask("acquire", "acquired").unwrap();
    let busy = run(&["lock", "-w", "0", p, "--", "true"]);
    assert_eq!(busy.status.code(), Some(1));
    let err = String::from_utf8_lossy(&busy.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("held elsewhere"), "{err}");
    let busy = run(&[
        "lock",
        "-w",
        "300ms",
        "--conflict-exit-code",
        "75",
        p,
        "--",
        "true",
    ]);
    assert_eq!(busy.status.code(), Some(75));
    // `ready` comes from a shell before it runs `locket`, which then waits.
    let mut waiter = LineProcess::spawn({
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg("echo ready; exec \"$0\" lock \"$1\" -- sh -c 'echo inside; read line'")
            .arg(locket_exe())
            .arg(&path);
        c
    })
    .unwrap();
    assert_eq!(
        waiter.maybe_line(std::time::Duration::from_millis(100)),
        None
    );
    plugin.ask("release", "released").unwrap();
    waiter.expect("inside").unwrap();
    waiter.send("done").unwrap();
    assert_eq!(waiter.wait().unwrap().code(), Some(0));
    // flock(1) holds it.
    let mut theirs = LineProcess::spawn({
        let mut c = Command::new("flock");
        c.arg(&path).args(["-c", "echo ready; read line"]);
        c
    })
    .unwrap();
    assert_eq!(
        run(&["lock", "-w", "0", p, "--", "true"]).status.code(),
        Some(1)
    );
    theirs.send("done").unwrap();
    assert!(
        run(&["lock", "-w", "10s", p, "--", "true"])
            .status
            .success()
    );
}

#[test]
fn shared_holders_run_together_and_exclude_an_exclusive_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.lock");
    let p = path.to_str().unwrap();
    let mut a = holding(&path, &["--shared"], "echo ready; read line");
    let mut b = holding(&path, &["--shared", "-w", "0"], "echo ready; read line");
    assert_eq!(
        run(&["lock", "-w", "0", p, "--", "true"]).status.code(),
        Some(1)
    );
    a.send("x").unwrap();
    b.send("x").unwrap();
    assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
    assert!(run(&["lock", "-w", "0", p, "--", "true"]).status.success());
}

#[test]
fn the_exit_code_is_the_commands_or_128_plus_its_signal() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.lock");
    let p = p.to_str().unwrap();
    assert_eq!(
        run(&["lock", p, "--", "sh", "-c", "exit 3"]).status.code(),
        Some(3)
    );
    assert_eq!(
        run(&["lock", p, "--", "sh", "-c", "kill -KILL $$"])
            .status
            .code(),
        Some(137)
    );
    assert_eq!(
        run(&["lock", p, "--", "/no/such/program"]).status.code(),
        Some(127)
    );
}

#[test]
fn sigterm_and_sigint_reach_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.lock");
    for (signal, code) in [("TERM", 7), ("INT", 8)] {
        let script = format!(
            "trap 'echo got {signal}; exit {code}' {signal}; echo ready; \
             while :; do sleep 0.05; done"
        );
        let mut held = holding(&path, &[], &script);
        let kill = Command::new("kill")
            .args([&format!("-{signal}"), &held.id().to_string()])
            .status();
        assert!(kill.unwrap().success());
        held.expect(&format!("got {signal}")).unwrap();
        assert_eq!(held.wait().unwrap().code(), Some(code), "{signal}");
        LineProcess::native(&path)
            .unwrap()
            .ask("acquire 0", "acquired")
            .unwrap();
    }
}

#[test]
fn the_command_does_not_inherit_the_lock_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.lock");
    let out = run(&[
        "lock",
        path.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "ls -l /proc/$$/fd",
    ]);
    assert!(out.status.success());
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(!listing.contains("x.lock"), "{listing}");
}

#[test]
fn usage_errors_are_clear() {
    for (args, needle) in [
        (vec!["lock", "/tmp/x.lock"], "<COMMAND>"),
        (vec!["lock", "/tmp/x.lock", "true"], "unexpected argument"),
        (
            vec!["lock", "-w", "soon", "/tmp/x.lock", "--", "true"],
            "invalid duration",
        ),
        (vec!["lock"], "<PATH>"),
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

fn holders(path: &Path, json: bool) -> String {
    let mut c = locket();
    c.arg("holders");
    if json {
        c.arg("--json");
    }
    let out = c.arg(path).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn holders_lists_pids_modes_and_commands() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.lock");
    std::fs::write(&path, "").unwrap();
    assert_eq!(
        holders(&path, false),
        format!("{}: not locked\n", path.display())
    );
    assert_eq!(holders(&path, true), "[]\n");

    // Shared holders.
    let mut a = LineProcess::native(&path).unwrap();
    let mut b = LineProcess::native(&path).unwrap();
    a.ask("acquire-shared", "acquired").unwrap();
    b.ask("acquire-shared", "acquired").unwrap();
    let json = holders(&path, true);
    for p in [&a, &b] {
        let entry = format!(
            "{{\"pid\":{},\"mode\":\"shared\",\"state\":\"holding\",\"command\":\"locket-peer\"}}",
            p.id()
        );
        assert!(json.contains(&entry), "{entry} not in {json}");
    }
    // An exclusive waiter shows as waiting, where the kernel shows it.
    let mut w = LineProcess::native(&path).unwrap();
    w.send("acquire").unwrap();
    let started = std::time::Instant::now();
    let waiting = format!("{:<8} exclusive  waiting", w.id());
    while !holders(&path, false).contains(&waiting) {
        assert!(
            started.elapsed() < locket_tests::PROMPT,
            "{}",
            holders(&path, false)
        );
    }
    a.ask("release", "released").unwrap();
    b.ask("release", "released").unwrap();
    w.expect("acquired").unwrap();
    let table = holders(&path, false);
    assert!(
        table.contains(&format!("{:<8} exclusive  holding  locket-peer", w.id())),
        "{table}"
    );
    w.ask("release", "released").unwrap();

    // A plugin's lock belongs to its locket-host process.
    let mut plugin = Peer::Plugin.start(dir.path(), "x.lock").unwrap();
    plugin.ask("acquire", "acquired").unwrap();
    let table = holders(&path, false);
    assert!(
        table.contains(&format!(
            "{:<8} exclusive  holding  locket-host",
            plugin.id()
        )),
        "{table}"
    );
    plugin.ask("release", "released").unwrap();

    // flock(1) on an inherited descriptor: the `flock` process that took the
    // lock has exited, and the shell that keeps the descriptor holds it.
    let mut shell = LineProcess::spawn(Peer::Flock.command(dir.path(), "x.lock")).unwrap();
    shell.ask("acquire", "acquired").unwrap();
    let table = holders(&path, false);
    let expected = format!("{:<8} exclusive  holding  flock-peer.sh", shell.id());
    assert!(table.contains(&expected), "{expected:?} not in {table}");
}

#[test]
fn lock_events_are_printed_only_when_rust_log_asks() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.lock");
    let p = p.to_str().unwrap();
    let quiet = locket()
        .env_remove("RUST_LOG")
        .args(["lock", p, "--", "true"])
        .output()
        .unwrap();
    assert!(quiet.status.success() && quiet.stderr.is_empty());
    let loud = locket()
        .env("RUST_LOG", "locket=debug")
        .args(["lock", p, "--", "true"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&loud.stderr);
    assert!(
        log.contains("acquired") && log.contains("waited_us"),
        "{log}"
    );
}
