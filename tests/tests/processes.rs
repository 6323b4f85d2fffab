//! locket across real processes: each holder and waiter is its own native
//! peer (`locket-peer`) or util-linux `flock` process.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use locket_tests::{LineProcess, PROMPT, Peer, holder_hands_over, scratch};

fn native(path: &Path) -> LineProcess {
    LineProcess::native(path).unwrap()
}

#[test]
fn a_blocked_waiter_gets_the_lock_soon_after_release() {
    // Without a timeout, with a long one, and for a shared waiter.
    let requests = [
        "acquire",
        "acquire 60000",
        "acquire-shared",
        "acquire-shared 60000",
    ];
    holder_hands_over(Peer::Native, Peer::Native, &requests);
}

#[test]
fn a_waiter_with_timeout_zero_fails_at_once() {
    let (_dir, path) = scratch();
    let mut holder = native(&path);
    let mut waiter = native(&path);
    holder.ask("acquire", "acquired").unwrap();
    let started = Instant::now();
    let line = waiter.ask("acquire 0", "error: timeout").unwrap();
    assert!(started.elapsed() < PROMPT);
    assert!(line.contains("held elsewhere"), "{line}");
    waiter.ask("acquire-shared 0", "error: timeout").unwrap();
}

#[test]
fn a_timeout_expires_neither_early_nor_very_late_across_processes() {
    let (_dir, path) = scratch();
    let mut holder = native(&path);
    let mut waiter = native(&path);
    holder.ask("acquire-shared", "acquired").unwrap();
    let started = Instant::now();
    waiter.send("acquire 300").unwrap();
    waiter
        .line_within(Duration::from_millis(300) + PROMPT)
        .map(|line| {
            assert!(line.starts_with("error: timeout"), "{line}");
        })
        .unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300),
        "gave up early, after {waited:?}"
    );
    // The timed-out waiter holds nothing.
    holder.ask("release", "released").unwrap();
    let mut third = native(&path);
    third.ask("acquire 0", "acquired").unwrap();
}

#[test]
fn a_sigkilled_holder_frees_the_lock_for_a_waiter() {
    let (_dir, path) = scratch();
    for request in ["acquire", "acquire 60000"] {
        let mut holder = native(&path);
        let mut waiter = native(&path);
        holder.ask("acquire", "acquired").unwrap();
        waiter.send(request).unwrap();
        holder.kill().unwrap();
        waiter.expect("acquired").unwrap();
    }
}

#[test]
fn the_same_file_under_other_names_is_the_same_lock_across_processes() {
    let (dir, path) = scratch();
    std::fs::write(&path, b"").unwrap();
    let symlink = dir.path().join("symlink.lock");
    let hardlink = dir.path().join("hardlink.lock");
    std::os::unix::fs::symlink("x.lock", &symlink).unwrap(); // relative target
    std::fs::hard_link(&path, &hardlink).unwrap();
    let mut holder = native(&symlink);
    holder.ask("acquire", "acquired").unwrap();
    for name in [&path, &hardlink, &dir.path().join("./sub/../x.lock")] {
        std::fs::create_dir_all(dir.path().join("sub")).unwrap();
        native(name).ask("acquire 0", "error: timeout").unwrap();
    }
    holder.ask("release", "released").unwrap();
    let mut by_hardlink = native(&hardlink);
    by_hardlink.ask("acquire-shared", "acquired").unwrap();
    native(&symlink).ask("acquire 0", "error: timeout").unwrap();
    native(&path).ask("acquire-shared 0", "acquired").unwrap();
}

#[test]
fn shared_holders_in_different_processes_coexist() {
    let (_dir, path) = scratch();
    let mut a = native(&path);
    let mut b = native(&path);
    let mut writer = native(&path);
    a.ask("acquire-shared", "acquired").unwrap();
    b.ask("acquire-shared 0", "acquired").unwrap();
    writer.send("acquire").unwrap();
    a.ask("release", "released").unwrap();
    assert_eq!(writer.maybe_line(Duration::from_millis(100)), None);
    b.ask("release", "released").unwrap();
    writer.expect("acquired").unwrap();
}

#[test]
fn errors_are_reported_through_the_line_protocol() {
    let (dir, path) = scratch();
    let mut h = native(&path);
    h.ask("release", "error: not-locked").unwrap();
    h.ask("acquire", "acquired").unwrap();
    h.ask("acquire-shared", "error: already-locked").unwrap();
    let mut missing = native(&dir.path().join("nope/x.lock"));
    missing.ask("acquire", "error: missing-parent").unwrap();
    assert!(!dir.path().join("nope").exists());
    let mut directory = native(dir.path());
    directory.ask("acquire", "error: not-regular-file").unwrap();
}

#[test]
fn a_created_lock_file_has_mode_0666_before_umask() {
    let (_dir, path) = scratch();
    for (umask, expected) in [("000", 0o666), ("027", 0o640)] {
        let _ = std::fs::remove_file(&path);
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("umask {umask} && exec \"$0\" \"$1\""))
            .arg(locket_tests::native_peer_exe())
            .arg(&path);
        let mut h = LineProcess::spawn(command).unwrap();
        h.ask("acquire", "acquired").unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, expected, "umask {umask}");
    }
}

#[test]
fn timed_out_waits_leak_no_descriptor_or_thread() {
    let (_dir, path) = scratch();
    let mut holder = native(&path);
    holder.ask("acquire", "acquired").unwrap();
    let mut waiter = native(&path);
    // Warm up once so that one-time set-up is not counted as a leak.
    waiter.ask("timeouts 1 1", "fds").unwrap();
    let line = waiter.ask("timeouts 300 1", "fds").unwrap();
    let n: Vec<usize> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(n.len(), 6, "{line}");
    assert_eq!(n[0], n[1], "descriptors leaked: {line}");
    assert_eq!(n[2], n[3], "threads leaked: {line}");
    assert_eq!(n[4], n[5], "POSIX timers leaked: {line}");
}

#[test]
fn util_linux_flock_and_locket_exclude_each_other() {
    let (_dir, path) = scratch();
    let mut ours = native(&path);
    ours.ask("acquire", "acquired").unwrap();
    let status = Command::new("flock")
        .args(["-n", "-E", "75"])
        .arg(&path)
        .arg("true")
        .status()
        .expect("util-linux flock(1) must be installed (the test script installs it)");
    assert_eq!(
        status.code(),
        Some(75),
        "flock(1) got in while locket held the lock"
    );
    ours.ask("release", "released").unwrap();

    // flock(1) holds while its command runs: the command waits on our stdin.
    let mut theirs = LineProcess::spawn({
        let mut c = Command::new("flock");
        c.arg(&path).args(["-c", "echo ready; read line"]);
        c
    })
    .unwrap();
    ours.ask("acquire 0", "error: timeout").unwrap();
    ours.send("acquire").unwrap();
    theirs.send("done").unwrap();
    ours.expect("acquired").unwrap();
}

#[test]
fn signals_that_interrupt_a_wait_neither_fail_nor_end_it() {
    let (_dir, path) = scratch();
    for request in ["acquire", "acquire 600000", "acquire-shared 600000"] {
        let mut holder = native(&path);
        let mut command = Command::new(locket_tests::native_peer_exe());
        command.arg(&path).env("LOCKET_PEER_SIGUSR1", "1");
        let mut waiter = LineProcess::spawn(command).unwrap();
        holder.ask("acquire", "acquired").unwrap();
        waiter.send(request).unwrap();
        // Each signal interrupts the blocked flock; none may end the wait.
        waiter.stays_quiet_while_signalled("-USR1", 100).unwrap();
        holder.ask("release", "released").unwrap();
        waiter.expect("acquired").unwrap();
        let line = waiter.ask("signals", "signals").unwrap();
        let delivered: usize = line["signals ".len()..].parse().unwrap();
        assert!(delivered > 0, "no signal was delivered: {line}");
    }
}
