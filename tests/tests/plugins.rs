//! Plugins under the real `locket-host`, against native processes: each
//! guest is a `locket-host run` process, each native locker a native peer
//! (`locket-peer`) process.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use locket_tests::{LineProcess, PROMPT, Peer, grant, guests, holder_hands_over, host_command};

fn scratch() -> tempfile::TempDir {
    locket_tests::scratch().0
}

/// A locker plugin with handle 0 on `/data/x.lock`.
fn locker(dir: &Path) -> LineProcess {
    Peer::Plugin.start(dir, "x.lock").unwrap()
}

fn native(dir: &Path) -> LineProcess {
    LineProcess::native(&dir.join("x.lock")).unwrap()
}

#[test]
fn a_plugin_waits_for_a_native_holder_and_gets_the_lock_soon_after() {
    let requests = ["acquire", "acquire 60000", "acquire-shared"];
    holder_hands_over(Peer::Native, Peer::Plugin, &requests);
}

#[test]
fn a_native_process_waits_for_a_plugin_holder_and_gets_the_lock_soon_after() {
    holder_hands_over(Peer::Plugin, Peer::Native, &["acquire", "acquire 60000"]);
}

#[test]
fn timeout_zero_fails_at_once_and_a_timeout_expires_on_time_in_a_plugin() {
    let dir = scratch();
    let mut holder = native(dir.path());
    holder.ask("acquire-shared", "acquired").unwrap();
    let mut plugin = locker(dir.path());
    plugin.ask("acquire 0", "error: timeout").unwrap();
    plugin.ask("acquire-shared 0", "acquired").unwrap();
    plugin.ask("release", "released").unwrap();
    let started = Instant::now();
    plugin.send("acquire 300").unwrap();
    let line = plugin
        .line_within(Duration::from_millis(300) + PROMPT)
        .unwrap();
    assert!(line.starts_with("error: timeout"), "{line}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    plugin.ask("is-locked", "false").unwrap();
}

#[test]
fn two_plugins_exclude_each_other() {
    holder_hands_over(Peer::Plugin, Peer::Plugin, &["acquire"]);
}

#[test]
fn every_error_case_is_reachable_and_correct() {
    let dir = scratch();
    let d = dir.path();
    std::fs::create_dir(d.join("sub")).unwrap();
    let fifo = d.join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    std::os::unix::fs::symlink("/etc/hostname", d.join("out-abs")).unwrap();
    std::os::unix::fs::symlink("../../outside.lock", d.join("sub/out-rel")).unwrap();
    let mut p = LineProcess::plugin(&[&grant(d), "--max-locks=8"], guests::LOCKER, &[]).unwrap();

    // lock-file: what the text shows.
    p.ask("open /data/a.lock", "opened 0").unwrap();
    p.ask("open /etc/passwd", "error: access-denied").unwrap();
    p.ask("open /data/../etc/passwd", "error: access-denied")
        .unwrap();
    p.ask("open relative.lock", "error: access-denied").unwrap();
    p.ask("open /data/x.lock/", "error: invalid-path").unwrap();

    // acquire: what the filesystem shows.
    p.ask("release", "error: not-locked").unwrap();
    p.ask("acquire", "acquired").unwrap();
    p.ask("acquire 0", "error: deadlock").unwrap(); // the same handle again
    p.ask("acquire-shared", "error: deadlock").unwrap();
    p.ask("open /data/./sub/../a.lock", "opened 1").unwrap();
    p.ask("#1 acquire", "error: deadlock").unwrap(); // another handle, same file, no timeout: at once
    p.ask("release", "released").unwrap();
    p.ask("#1 acquire-shared", "acquired").unwrap();
    p.ask("acquire-shared", "acquired").unwrap(); // shared + shared is fine
    p.ask("#1 release", "released").unwrap();

    p.ask("open /data/sub", "opened 2").unwrap();
    p.ask("#2 acquire", "error: invalid-path").unwrap();
    p.ask("open /data/fifo", "opened 3").unwrap();
    let line = p.ask("#3 acquire", "error: invalid-path").unwrap();
    assert!(line.contains("FIFO"), "{line}");
    p.ask("open /data/out-abs", "opened 4").unwrap();
    p.ask("#4 acquire", "error: access-denied").unwrap();
    p.ask("open /data/sub/out-rel", "opened 5").unwrap();
    p.ask("#5 acquire", "error: access-denied").unwrap();
    p.ask("open /data/missing/x.lock", "opened 6").unwrap();
    p.ask("#6 acquire", "error: io").unwrap();

    // limit: 7 handles are open, the cap is 8.
    p.ask("open-many /data/many 5", "opened 1").unwrap();
    p.expect("error: limit").unwrap();
    p.ask("#2 drop", "dropped").unwrap();
    p.ask("open /data/b.lock", "opened 7").unwrap();

    // Nothing was created outside the grant, and the symlink targets are untouched.
    assert!(!d.parent().unwrap().join("outside.lock").exists());
    assert!(!d.join("missing").exists());
}

#[test]
fn a_read_only_grant_locks_existing_files_but_creates_none() {
    let dir = scratch();
    std::fs::write(dir.path().join("exists.lock"), "").unwrap();
    let ro = format!("--dir-ro={}::/ro", dir.path().display());
    let mut p = LineProcess::plugin(&[&ro], guests::LOCKER, &[]).unwrap();
    p.ask("open /ro/exists.lock", "opened 0").unwrap();
    p.ask("acquire", "acquired").unwrap();
    p.ask("open /ro/new.lock", "opened 1").unwrap();
    p.ask("#1 acquire", "error: access-denied").unwrap();
    assert!(!dir.path().join("new.lock").exists());
    native(dir.path()).ask("acquire 0", "acquired").unwrap(); // x.lock, a different file
    LineProcess::native(&dir.path().join("exists.lock"))
        .unwrap()
        .ask("acquire 0", "error: timeout")
        .unwrap();
}

#[test]
fn a_guest_that_exits_traps_or_times_out_while_holding_frees_the_lock() {
    use locket_tests::plugin_ends_and_frees as ends_and_frees;
    let _ = ends_and_frees(&[], "exit 7", 7);
    let _ = ends_and_frees(&[], "exit 0", 0);
    let _ = ends_and_frees(&[], "trap", 134);
    let _ = ends_and_frees(&["--timeout=3s"], "spin", 124);
    let _ = ends_and_frees(&[], "drop", 0); // dropping the handle; stdin then closes
}

#[test]
fn the_timeout_ends_a_guest_blocked_waiting_for_a_lock() {
    let dir = scratch();
    let mut holder = native(dir.path());
    holder.ask("acquire", "acquired").unwrap();
    let stderr_path = dir.path().join("stderr");
    let mut command = host_command(
        &[&grant(dir.path()), "--timeout=3s"],
        guests::LOCKER,
        &["/data/x.lock"],
    );
    command.stderr(std::fs::File::create(&stderr_path).unwrap());
    let mut plugin = LineProcess::spawn(command).unwrap();
    plugin.send("acquire").unwrap(); // blocks in the host, with no timeout of its own
    let status = plugin.wait().unwrap();
    assert_eq!(status.code(), Some(124));
    // Ended by the host's bounded wait, not by the last-resort process exit.
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(stderr.contains("timed out after 3s"), "{stderr}");
    assert!(!stderr.contains("did not stop"), "{stderr}");
}

#[test]
fn arguments_after_the_plugin_reach_it_verbatim() {
    let dir = scratch();
    let mut p = LineProcess::plugin(
        &[&grant(dir.path()), "--env=GREETING=hi there"],
        guests::LOCKER,
        &["/data/x.lock", "--help", "-x"],
    )
    .unwrap();
    p.ask("args", "args locker.wasm /data/x.lock --help -x")
        .unwrap();
    p.ask("env GREETING", "env hi there").unwrap();
}

#[test]
fn no_lost_updates_between_plugins_and_native_processes() {
    let dir = scratch();
    let data = dir.path().join("counter");
    std::fs::write(&data, "0\n").unwrap();
    let n = 500;
    let mut children = Vec::new();
    for _ in 0..4 {
        let mut plugin = locket_tests::plugin_incrementer(dir.path(), n);
        children.push(plugin.stderr(Stdio::null()).spawn().unwrap());
        let lock = dir.path().join("counter.lock");
        children.push(
            locket_tests::native_incrementer(&lock, &data, n)
                .spawn()
                .unwrap(),
        );
    }
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let total: u64 = std::fs::read_to_string(&data)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(total, 8 * n);
}

/// The host's replaced-file check on its fast path (one `fstat` of a lock
/// file whose change time has settled, as the `locket` library's own tests
/// check natively): a plugin whose lock file is deleted, renamed or
/// replaced behind its back locks the file the path names now.
#[test]
fn a_settled_lock_file_changed_behind_a_plugins_back_is_noticed() {
    type Change = fn(&Path, &Path);
    let changes: [(&str, Change); 4] = [
        ("deleted", |_, path| std::fs::remove_file(path).unwrap()),
        ("renamed over", |dir, path| {
            std::fs::write(dir.join("new"), "").unwrap();
            std::fs::rename(dir.join("new"), path).unwrap();
        }),
        ("renamed away", |dir, path| {
            std::fs::rename(path, dir.join("old")).unwrap();
        }),
        ("one of two hard links deleted", |dir, path| {
            std::fs::rename(dir.join("alias"), dir.join("kept")).unwrap();
            std::fs::remove_file(path).unwrap();
        }),
    ];
    let dirs: Vec<_> = changes.iter().map(|_| scratch()).collect();
    for dir in &dirs {
        let path = dir.path().join("x.lock");
        std::fs::write(&path, "").unwrap();
        std::fs::hard_link(&path, dir.path().join("alias")).unwrap();
    }
    // Age the files: a change time is trusted once it is 2 s old.
    std::thread::sleep(Duration::from_millis(2100));
    for ((name, change), dir) in changes.iter().zip(&dirs) {
        let path = dir.path().join("x.lock");
        let mut plugin = locker(dir.path());
        for _ in 0..2 {
            plugin.ask("acquire", "acquired").unwrap();
            plugin.ask("release", "released").unwrap();
        }
        change(dir.path(), &path);
        let mut fresh = native(dir.path());
        fresh.ask("acquire", "acquired").unwrap();
        plugin.send("acquire 0").unwrap();
        let answer = plugin.line_within(PROMPT).unwrap();
        assert!(
            answer.starts_with("error: timeout"),
            "{name}: the plugin locked the file it had open, not the path's ({answer})"
        );
        fresh.ask("release", "released").unwrap();
        plugin.ask("acquire 0", "acquired").unwrap();
        fresh.ask("acquire 0", "error: timeout").unwrap();
    }
}

#[test]
fn a_component_built_against_0_1_0_runs_unchanged() {
    // It imports the interface at 0.1.0, the version before `token`.
    let bytes = std::fs::read(guests::LEGACY).unwrap();
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"locket:lock/locket@0.1.0"), "not a 0.1.0 component");
    assert!(!has(b"locket:lock/locket@0.1.1"));
    assert!(!has(b"token"), "it knows of `token`");
    let dir = scratch();
    let mut legacy = LineProcess::plugin(&[&grant(dir.path())], guests::LEGACY, &["/data/x.lock"])
        .expect("a 0.1.0 component is refused");
    legacy.expect("acquired").unwrap();
    legacy.expect("is-locked true").unwrap();
    let mut peer = native(dir.path());
    peer.ask("acquire 0", "error: timeout").unwrap();
    legacy.send("go").unwrap();
    legacy.expect("released").unwrap();
    peer.ask("acquire 0", "acquired").unwrap();
    assert!(legacy.wait().unwrap().success());
}
