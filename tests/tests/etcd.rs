//! The etcd backend against a real 3-member cluster on loopback ports: the
//! lock semantics, etcdctl interop, and what leases and tokens promise.
#![cfg(target_os = "linux")]

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use locket_etcd::{Address, Connect, Error, LockGroup, Mode, Session};
use locket_tests::etcd::{EtcdCluster, token_of, wait_for_queue};
use locket_tests::{LineProcess, PROMPT, locket_exe};

#[test]
fn exclusive_and_shared_semantics_across_sessions() {
    let cluster = EtcdCluster::start(3).unwrap();
    let (a, b) = (cluster.session(), cluster.session());
    let la = a.lock("ns/one").unwrap();
    let lb = b.lock("ns/one").unwrap();

    // Exclusive excludes; zero tries once; a timeout runs out.
    la.acquire_with(Mode::Exclusive, None).unwrap();
    assert!(la.is_locked());
    let t1 = la.token().expect("a token while held");
    assert!(matches!(
        lb.acquire_with(Mode::Exclusive, Some(Duration::ZERO)),
        Err(Error::Timeout { .. })
    ));
    assert!(matches!(
        lb.acquire_with(Mode::Shared, Some(Duration::from_millis(300))),
        Err(Error::Timeout { .. })
    ));
    assert!(!lb.is_locked());
    assert_eq!(lb.token(), None);
    // Not reentrant; release of nothing.
    assert!(matches!(la.acquire(), Err(Error::AlreadyLocked { .. })));
    assert!(matches!(lb.release(), Err(Error::NotLocked { .. })));

    // A waiter gets it on release, with a larger token.
    std::thread::scope(|s| {
        let waiter = s.spawn(|| lb.acquire_with(Mode::Exclusive, Some(PROMPT)));
        wait_for_queue(&a, "ns/one", 2);
        la.release().unwrap();
        waiter.join().unwrap().unwrap();
    });
    let t2 = lb.token().unwrap();
    assert!(t2 > t1, "token {t2} after {t1}");
    assert!(matches!(la.release(), Err(Error::NotLocked { .. })));
    lb.release().unwrap();

    // Shared holders coexist; an exclusive one waits for both.
    la.acquire_shared().unwrap();
    lb.acquire_with(Mode::Shared, Some(Duration::ZERO)).unwrap();
    let lc = a.lock("ns/one").unwrap();
    assert!(matches!(
        lc.acquire_with(Mode::Exclusive, Some(Duration::ZERO)),
        Err(Error::Timeout { .. })
    ));
    la.release().unwrap();
    assert!(matches!(
        lc.acquire_with(Mode::Exclusive, Some(Duration::ZERO)),
        Err(Error::Timeout { .. })
    ));
    lb.release().unwrap();
    lc.acquire_with(Mode::Exclusive, Some(Duration::ZERO))
        .unwrap();
    // A failed try left no key behind: only lc's is queued.
    assert_eq!(a.holders("ns/one").unwrap().len(), 1);
}

#[test]
fn handles_of_one_session_exclude_each_other_and_groups_detect_deadlock() {
    let cluster = EtcdCluster::start(3).unwrap();
    let s = cluster.session();
    let one = s.lock("same").unwrap();
    let two = s.lock("same").unwrap();
    one.acquire().unwrap();
    assert!(matches!(
        two.acquire_with(Mode::Exclusive, Some(Duration::ZERO)),
        Err(Error::Timeout { .. })
    ));
    drop(one); // dropping releases
    two.acquire_with(Mode::Exclusive, Some(PROMPT)).unwrap();
    two.release().unwrap();

    let group = LockGroup::new();
    let g1 = group.lock(&s, "same").unwrap();
    let g2 = group.lock(&s, "same").unwrap();
    g1.acquire_shared().unwrap();
    g2.acquire_shared().unwrap();
    g2.release().unwrap();
    assert!(matches!(
        g2.acquire_with(Mode::Exclusive, None),
        Err(Error::Deadlock { .. })
    ));
    g1.release().unwrap();
    g2.acquire_with(Mode::Exclusive, Some(PROMPT)).unwrap();

    // Closing the session frees what its handles hold at once (the lease is
    // revoked, not left to expire), and nothing more can be acquired on it.
    let other = cluster.session();
    let waiter = other.lock("same").unwrap();
    assert!(matches!(
        waiter.acquire_with(Mode::Exclusive, Some(Duration::ZERO)),
        Err(Error::Timeout { .. })
    ));
    s.close();
    assert!(s.is_closed());
    assert!(!g2.is_locked());
    assert_eq!(g2.token(), None);
    waiter
        .acquire_with(Mode::Exclusive, Some(Duration::ZERO))
        .expect("free at once after close");
    let late = s.lock("other").unwrap();
    assert!(matches!(late.acquire(), Err(Error::Closed)));
    assert!(matches!(g2.release(), Err(Error::NotLocked { .. })));
    assert_eq!(s.lost_locks(), 0, "a close is not a loss");
}

#[test]
fn names_are_checked() {
    let cluster = EtcdCluster::start(1).unwrap();
    let s = cluster.session();
    for bad in ["", "../x", "/abs", "a\0b", &"n".repeat(300)] {
        assert!(
            matches!(s.lock(bad), Err(Error::InvalidName { .. })),
            "{bad:?} accepted"
        );
    }
}

#[test]
fn many_threads_count_without_lost_updates() {
    let cluster = EtcdCluster::start(3).unwrap();
    let s = cluster.session();
    let counter = Arc::new(std::sync::Mutex::new((0u32, false)));
    let start = Arc::new(Barrier::new(4));
    std::thread::scope(|scope| {
        for _ in 0..4 {
            let (s, counter, start) = (s.clone(), Arc::clone(&counter), Arc::clone(&start));
            scope.spawn(move || {
                let lock = s.lock("count").unwrap();
                start.wait();
                for _ in 0..25 {
                    let guard = lock.lock().unwrap();
                    {
                        let mut c = counter.lock().unwrap();
                        assert!(!c.1, "two holders at once");
                        c.1 = true;
                    }
                    std::thread::yield_now();
                    let mut c = counter.lock().unwrap();
                    c.0 += 1;
                    c.1 = false;
                    drop(c);
                    drop(guard);
                }
            });
        }
    });
    assert_eq!(counter.lock().unwrap().0, 100);
}

/// `command` as a line process, in a process group of its own, behind a
/// shell that prints `ready` first.
fn ready_then(command: &mut Command) -> LineProcess {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "echo ready; exec \"$@\"", "sh"])
        .arg(command.get_program())
        .args(command.get_args())
        .envs(command.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .process_group(0);
    LineProcess::spawn_within(cmd, PROMPT * 3).expect("the command")
}

/// Sends `signal` to the process group of `p`.
fn signal_group(p: &LineProcess, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{}", p.id()))
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits until the lock's queue has `n` keys and the last is waiting.
fn wait_for_waiter(session: &Session, name: &str, n: usize) {
    let until = std::time::Instant::now() + PROMPT;
    loop {
        let list = session.holders(name).unwrap();
        if list.len() >= n && list.last().is_some_and(|h| !h.holding) {
            return;
        }
        assert!(
            std::time::Instant::now() < until,
            "no waiter queued: {list:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn etcdctl_lock_and_ours_exclude_each_other_both_ways() {
    let cluster = EtcdCluster::start(3).unwrap();
    let s = cluster.session();
    for mode in [Mode::Exclusive, Mode::Shared] {
        // Ours holds: etcdctl waits, and gets it on release.
        let ours = s.lock("interop").unwrap();
        ours.acquire_with(mode, Some(PROMPT)).unwrap();
        let mut theirs = ready_then(cluster.etcdctl().args(["lock", "interop"]));
        wait_for_waiter(&s, "interop", 2);
        ours.release().unwrap();
        let key = theirs.line_within(PROMPT).unwrap();
        assert!(key.starts_with("interop/"), "etcdctl printed {key:?}");
        // etcdctl holds: ours waits, in either mode.
        assert!(matches!(
            ours.acquire_with(mode, Some(Duration::ZERO)),
            Err(Error::Timeout { .. })
        ));
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| ours.acquire_with(mode, Some(PROMPT * 2)));
            wait_for_waiter(&s, "interop", 2);
            // SIGINT: etcdctl unlocks and exits.
            signal_group(&theirs, "INT");
            waiter.join().unwrap().unwrap();
        });
        assert!(ours.token().is_some());
        ours.release().unwrap();
        theirs.wait().unwrap();
    }
}

/// `locket lock ADDR -- sh -c 'echo ready; echo token $LOCKET_TOKEN; ...'`.
/// Its stderr goes to `cluster.dir()/NAME.stderr`.
fn locket_holder(cluster: &EtcdCluster, name: &str, ttl: &str, then: &str) -> LineProcess {
    let stderr = std::fs::File::create(cluster.dir().join(format!("{name}.stderr"))).unwrap();
    let mut cmd = Command::new(locket_exe());
    cmd.args(["lock", "--lease-ttl", ttl, &cluster.address(name), "--"])
        .args([
            "sh",
            "-c",
            &format!("echo ready; echo \"token $LOCKET_TOKEN\"; {then}"),
        ])
        .stderr(stderr)
        .process_group(0);
    LineProcess::spawn_within(cmd, PROMPT * 3).expect("locket lock etcd://")
}

#[test]
fn a_killed_holder_is_freed_by_its_lease() {
    let cluster = EtcdCluster::start(3).unwrap();
    let s = cluster.session();
    let mut holder = locket_holder(&cluster, "crash", "2s", "exec sleep 1000");
    let t1 = token_of(&holder.line_within(PROMPT).unwrap());
    let lock = s.lock("crash").unwrap();
    assert!(matches!(
        lock.acquire_with(Mode::Exclusive, Some(Duration::ZERO)),
        Err(Error::Timeout { .. })
    ));
    // SIGKILL the whole group: no release, only the lease can free it.
    signal_group(&holder, "KILL");
    holder.wait().unwrap();
    // TTL 2 s, plus a generous slack for a loaded machine.
    lock.acquire_with(Mode::Exclusive, Some(Duration::from_secs(2) + PROMPT))
        .unwrap();
    assert!(lock.token().unwrap() > t1);
}

#[test]
fn a_paused_holder_loses_its_lock_and_its_stale_write_is_fenced() {
    let cluster = EtcdCluster::start(3).unwrap();
    let s = cluster.session();
    // The holder reports its token, waits for a line, then tries its write.
    let mut holder = locket_holder(
        &cluster,
        "fence",
        "2s",
        "read _; echo \"write $LOCKET_TOKEN\"",
    );
    let stale = token_of(&holder.line_within(PROMPT).unwrap());
    // The store the lock protects: it accepts a write only with a token at
    // least as high as any it has seen.
    let mut highest = 0u64;
    let mut store = |token: u64| {
        if token >= highest {
            highest = token;
            true
        } else {
            false
        }
    };
    assert!(store(stale));
    // Pause the `locket` process (not its command) past its TTL: its
    // keep-alives stop, and the cluster hands the lock on.
    let locket_pid = holder.id().to_string();
    let pause = |sig: &str| {
        assert!(
            Command::new("kill")
                .args([sig, &locket_pid])
                .status()
                .unwrap()
                .success()
        );
    };
    pause("-STOP");
    let lock = s.lock("fence").unwrap();
    lock.acquire_with(Mode::Exclusive, Some(Duration::from_secs(2) + PROMPT))
        .unwrap();
    let fresh = lock.token().unwrap();
    assert!(fresh > stale, "fresh token {fresh} after {stale}");
    assert!(store(fresh));
    pause("-CONT");
    // The stale holder's write arrives late, and is refused.
    holder.send("go").unwrap();
    let write = holder.line_within(PROMPT).unwrap();
    let token: u64 = write.strip_prefix("write ").unwrap().parse().unwrap();
    assert_eq!(token, stale);
    assert!(!store(token), "a stale write was accepted");
    // And the stale holder itself saw that its lock was lost.
    holder.wait().unwrap();
    let stderr = std::fs::read_to_string(cluster.dir().join("fence.stderr")).unwrap();
    assert!(stderr.contains("was lost"), "stderr: {stderr}");
    assert!(lock.is_locked());
}

/// A shell loop that adds 1 to the counter `file` `n` times, each under
/// the lock taken by `lock_prefix` (a command that runs the rest of its
/// arguments under the lock), and records each increment it made as a line
/// of `log`. With `must_succeed`, a failed lock command ends the loop with
/// an error; without, the loop goes on.
fn increment_loop(
    lock_prefix: &str,
    file: &std::path::Path,
    log: &std::path::Path,
    n: u32,
    must_succeed: bool,
) -> Command {
    let add = format!(
        "n=$(cat {0}); echo $((n + 1)) > {0}; echo done >> {1}",
        file.display(),
        log.display()
    );
    let on_failure = if must_succeed { "exit 1" } else { "true" };
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "for i in $(seq {n}); do {lock_prefix} sh -c '{add}' || {on_failure}; done"
        ))
        .process_group(0);
    cmd
}

fn lines(path: &std::path::Path) -> u32 {
    std::fs::read_to_string(path).map_or(0, |t| u32::try_from(t.lines().count()).unwrap())
}

/// Children killed with their process groups when dropped, so that a
/// failing test leaves none behind.
struct Reaped(Vec<std::process::Child>);

impl Drop for Reaped {
    fn drop(&mut self) {
        for child in &mut self.0 {
            if child.try_wait().ok().flatten().is_none() {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .status();
                let _ = child.wait();
            }
        }
    }
}

fn shell_words(cmd: &Command) -> String {
    let mut words: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_string_lossy(), v?.to_string_lossy())))
        .collect();
    words.push(cmd.get_program().to_string_lossy().into_owned());
    words.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    words.join(" ")
}

#[test]
fn a_counter_survives_the_leader_being_killed() {
    let mut cluster = EtcdCluster::start(3).unwrap();
    let file = cluster.dir().join("counter");
    std::fs::write(&file, "0\n").unwrap();
    let locket = format!(
        "{} lock -w 120s {} --",
        locket_exe().display(),
        cluster.address("count")
    );
    let mut ctl = cluster.etcdctl();
    ctl.args(["lock", "count", "--"]);
    let ctl = shell_words(&ctl);
    let n = 30;
    // etcdctl itself gives up when its endpoint dies ("transport is
    // closing"), sometimes after the command ran and before it unlocked, so
    // its loop goes on after a failure and the check counts the increments
    // each loop made. Ours must ride out the leader's death.
    let logs: Vec<_> = (0..3)
        .map(|i| cluster.dir().join(format!("log{i}")))
        .collect();
    let mut loops = Reaped(
        [(&locket, true), (&locket, true), (&ctl, false)]
            .into_iter()
            .zip(&logs)
            .map(|((prefix, must), log)| {
                increment_loop(prefix, &file, log, n, must).spawn().unwrap()
            })
            .collect(),
    );
    // Once the run is under way, kill the leader.
    let until = std::time::Instant::now() + PROMPT * 6;
    while std::fs::read_to_string(&file)
        .unwrap()
        .trim()
        .parse::<u32>()
        .unwrap_or(0)
        < 5
    {
        assert!(
            std::time::Instant::now() < until,
            "the counter never reached 5"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let leader = cluster.leader().unwrap();
    cluster.kill(leader);
    let at_kill: u32 = std::fs::read_to_string(&file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        at_kill < 3 * n,
        "the run ended before the leader was killed"
    );
    for child in &mut loops.0 {
        assert!(child.wait().unwrap().success(), "an increment loop failed");
    }
    let total: u32 = std::fs::read_to_string(&file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(lines(&logs[0]), n);
    assert_eq!(lines(&logs[1]), n);
    let made: u32 = logs.iter().map(|l| lines(l)).sum();
    assert_eq!(total, made, "lost updates");
    assert!(lines(&logs[2]) > 0, "etcdctl never got the lock");
}

#[test]
fn without_quorum_acquires_fail_clearly_and_hold_again_once_it_returns() {
    let mut cluster = EtcdCluster::start(3).unwrap();
    let s = cluster.session();
    let lock = s.lock("quorum").unwrap();
    lock.acquire_with(Mode::Exclusive, Some(PROMPT)).unwrap();
    lock.release().unwrap();
    cluster.kill(0);
    cluster.kill(1);
    let asked = Duration::from_secs(3);
    let started = std::time::Instant::now();
    let e = lock.acquire_with(Mode::Exclusive, Some(asked)).unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e}");
    assert!(
        started.elapsed() < asked + PROMPT,
        "the acquire hung past its timeout"
    );
    assert!(e.to_string().contains("unavailable"), "{e}");
    assert!(!lock.is_locked());
    cluster.restart(0).unwrap();
    cluster.restart(1).unwrap();
    cluster.wait_healthy().unwrap();
    lock.acquire_with(Mode::Exclusive, Some(PROMPT * 3))
        .unwrap();
    assert!(lock.is_locked());
}

fn connect(cluster: &EtcdCluster) -> Connect {
    Connect::new(Address::parse(&cluster.address("x")).unwrap().cluster)
        .connect_timeout(Duration::from_secs(3))
}

#[test]
fn wrong_or_missing_credentials_are_refused_and_nothing_is_held() {
    let cluster = EtcdCluster::start(1).unwrap();
    cluster.enable_auth("s3cret-pw").unwrap();
    let e = connect(&cluster)
        .credentials("root", "wrong-pw")
        .session()
        .unwrap_err();
    assert!(matches!(e, Error::Auth { .. }), "{e}");
    assert!(!e.to_string().contains("wrong-pw"));
    // etcd grants leases to anyone: the access check is what sees it.
    let e = connect(&cluster)
        .check_access("auth")
        .session()
        .unwrap_err();
    assert!(matches!(e, Error::Auth { .. }), "{e}");
    let e = connect(&cluster).user("root").session().unwrap_err();
    assert!(matches!(e, Error::Settings(_)), "{e}");

    // The command: one clear line, exit 77, the password nowhere.
    let out = Command::new(locket_exe())
        .args(["lock", &cluster.address("auth"), "--", "true"])
        .env("LOCKET_ETCD_USER", "root")
        .env("LOCKET_ETCD_PASSWORD", "wrong-pw")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(77), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
    assert!(stderr.contains("refused the credentials") && !stderr.contains("wrong-pw"));

    let good = connect(&cluster)
        .credentials("root", "s3cret-pw")
        .session()
        .unwrap();
    assert!(
        good.holders("auth").unwrap().is_empty(),
        "a refused run left a key"
    );
    let lock = good.lock("auth").unwrap();
    lock.acquire_with(Mode::Exclusive, Some(PROMPT)).unwrap();
    assert!(lock.token().is_some());
}

#[test]
fn tls_needs_the_right_ca_and_a_client_certificate() {
    let cluster = EtcdCluster::start_tls(1).unwrap();
    let tls = cluster.tls().unwrap().clone();
    let s = connect(&cluster)
        .ca_file(&tls.ca)
        .client_cert(&tls.client_cert, &tls.client_key)
        .session()
        .unwrap();
    s.lock("tls")
        .unwrap()
        .acquire_with(Mode::Exclusive, Some(PROMPT))
        .unwrap();

    let e = connect(&cluster)
        .ca_file(&tls.wrong_ca)
        .client_cert(&tls.client_cert, &tls.client_key)
        .session()
        .unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e}");
    let e = connect(&cluster).ca_file(&tls.ca).session().unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e}");
    let e = connect(&cluster)
        .ca_file(cluster.dir().join("missing.pem"))
        .session()
        .unwrap_err();
    assert!(matches!(e, Error::Config { .. }), "{e}");
}
