//! Resource limits and signals: a plugin cannot exhaust the host, is stopped
//! cleanly when it misbehaves or the host is told to stop, and its locks are
//! released every time.

use locket_tests::{LineProcess, PROMPT, Peer, entries, grant, guests};

#[test]
fn a_handle_loop_hits_max_locks_with_limit_not_descriptor_exhaustion() {
    let dir = tempfile::tempdir().unwrap();
    // The default cap.
    let mut p = LineProcess::plugin(&[&grant(dir.path())], guests::LOCKER, &[]).unwrap();
    p.ask("open-many /data/h 100000", "opened 1024").unwrap();
    p.expect("error: limit").unwrap();
    // Thousands of distinct files, each acquired, under a higher cap.
    let mut p = LineProcess::plugin(
        &[&grant(dir.path()), "--max-locks=3000"],
        guests::LOCKER,
        &[],
    )
    .unwrap();
    p.ask("open-many /data/many 5000", "opened 3000").unwrap();
    p.expect("error: limit").unwrap();
    p.ask("acquire-kept", "acquired 3000").unwrap();
    assert!(entries(format!("/proc/{}/fd", p.id())) >= 3000);
    let mut native = LineProcess::native(&dir.path().join("many-2999")).unwrap();
    native.ask("acquire 0", "error: timeout").unwrap();
    p.ask("open /data/one-more", "error: limit").unwrap();
}

/// As `plugin_ends_and_frees`, and checks that stderr says `message`.
fn stopped_and_freed(host_args: &[&str], then: &str, code: i32, message: &str) {
    let stderr = locket_tests::plugin_ends_and_frees(host_args, then, code);
    assert!(
        stderr.contains(message),
        "after {then}: {message:?} not in {stderr}"
    );
}

#[test]
fn a_plugin_that_allocates_without_bound_is_stopped_and_its_locks_released() {
    stopped_and_freed(
        &["--max-memory=32M"],
        "alloc",
        134,
        "memory limit (--max-memory",
    );
}

#[test]
fn a_plugin_that_spins_is_stopped_by_fuel_and_its_locks_released() {
    stopped_and_freed(&["--fuel=200000000"], "spin", 134, "used up its fuel");
}

/// Winch's code (a first run's, or `--compiler winch`) is stopped by
/// `--timeout` and `--max-memory` as Cranelift's is.
#[test]
fn a_plugin_on_winch_code_is_stopped_by_the_timeout_and_memory_limits() {
    stopped_and_freed(
        &["--compiler=winch", "--timeout=1s"],
        "spin",
        124,
        "timed out after 1s",
    );
    stopped_and_freed(
        &["--compiler=winch", "--max-memory=32M"],
        "alloc",
        134,
        "memory limit (--max-memory",
    );
}

#[test]
fn sigint_and_sigterm_end_the_run_cleanly() {
    stopped_and_freed(&[], "signal INT", 130, "interrupted (SIGINT)");
    stopped_and_freed(&[], "signal TERM", 143, "terminated (SIGTERM)");
}

#[test]
fn the_hosts_own_wake_up_signal_from_outside_neither_fails_nor_ends_a_wait() {
    let dir = tempfile::tempdir().unwrap();
    let mut holder = LineProcess::native(&dir.path().join("x.lock")).unwrap();
    holder.ask("acquire", "acquired").unwrap();
    let mut plugin = Peer::Plugin.start(dir.path(), "x.lock").unwrap();
    // A first timed wait installs the host's handler for its timer signal,
    // which the `locket` library documents as SIGRTMAX - 1.
    plugin.ask("acquire 5", "error: timeout").unwrap();
    let wake_signal = format!("-{}", libc::SIGRTMAX() - 1);
    for request in ["acquire 600000", "acquire"] {
        plugin.send(request).unwrap();
        plugin
            .stays_quiet_while_signalled(&wake_signal, 100)
            .unwrap();
        holder.ask("release", "released").unwrap();
        assert_eq!(plugin.line_within(PROMPT).unwrap(), "acquired", "{request}");
        plugin.ask("release", "released").unwrap();
        holder.ask("acquire", "acquired").unwrap();
    }
}
