//! Plugins whose locks live in a real 3-member etcd cluster
//! (`locket-host run --locks etcd://.../NAMESPACE::GUEST`), beside native
//! `locket lock` processes, etcdctl and the Rust API.
#![cfg(target_os = "linux")]

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use locket_etcd::{Error, Mode};
use locket_tests::etcd::{EtcdCluster, token_of, wait_for_queue};
use locket_tests::{LineProcess, PROMPT, guests, host_command, locket_exe};

/// `--locks ADDRESS/NAMESPACE::/cluster`.
fn locks(cluster: &EtcdCluster, namespace: &str) -> String {
    format!("--locks={}::/cluster", cluster.address(namespace))
}

/// The locker plugin with `host_args`, handle 0 on the guest path `path`,
/// its stderr in `stderr`.
fn locker(host_args: &[&str], path: &str, stderr: &Path) -> LineProcess {
    let mut command = host_command(host_args, guests::LOCKER, &[path]);
    command
        .stderr(std::fs::File::create(stderr).unwrap())
        .process_group(0);
    LineProcess::spawn_within(command, PROMPT * 3).expect("locket-host run --locks")
}

fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

fn read_number(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn plugins_on_three_hosts_natives_and_etcdctl_count_without_lost_updates() {
    let cluster = EtcdCluster::start(3).unwrap();
    let data = cluster.dir().join("data");
    std::fs::create_dir(&data).unwrap();
    let counter = data.join("counter");
    std::fs::write(&counter, "0\n").unwrap();
    let n: u64 = 25;
    let grant_locks = locks(&cluster, "count");
    let grant_dir = format!("--dir={}::/data", data.display());
    let mut children = Vec::new();
    // Three host processes, each running the counter plugin on the etcd
    // lock `count/counter.lock`.
    for _ in 0..3 {
        let mut c = host_command(
            &[&grant_locks, &grant_dir],
            guests::COUNTER,
            &["/cluster/counter.lock", "/data/counter", &n.to_string()],
        );
        c.stdout(Stdio::null());
        children.push(("plugin", c.spawn().unwrap()));
    }
    // Two `locket lock` loops and one `etcdctl lock` loop on the same lock.
    let add = format!("n=$(cat {0}); echo $((n + 1)) > {0}", counter.display());
    let native = format!(
        "{} lock -w 120s {} --",
        locket_exe().display(),
        cluster.address("count/counter.lock")
    );
    let mut ctl = cluster.etcdctl();
    ctl.args(["lock", "count/counter.lock", "--"]);
    let ctl = std::iter::once(ctl.get_program())
        .chain(ctl.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    for (who, prefix) in [("locket", &native), ("locket", &native), ("etcdctl", &ctl)] {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(format!(
                "for i in $(seq {n}); do ETCDCTL_API=3 {prefix} sh -c '{add}' || exit 1; done"
            ))
            .stdout(Stdio::null());
        children.push((who, c.spawn().unwrap()));
    }
    for (who, child) in &mut children {
        assert!(child.wait().unwrap().success(), "a {who} loop failed");
    }
    assert_eq!(read_number(&counter), 6 * n, "lost updates");
    // Every host released and revoked on its way out: nothing is queued.
    assert!(
        cluster
            .session()
            .holders("count/counter.lock")
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_killed_host_is_freed_by_its_lease() {
    let cluster = EtcdCluster::start(3).unwrap();
    let grant = locks(&cluster, "crash");
    let stderr = cluster.dir().join("host.stderr");
    let mut host = locker(&[&grant, "--lease-ttl=2s"], "/cluster/x", &stderr);
    host.ask("acquire", "acquired").unwrap();
    let t1 = token_of(&host.ask("token", "token ").unwrap());
    let s = cluster.session();
    let lock = s.lock("crash/x").unwrap();
    assert!(matches!(
        lock.acquire_with(Mode::Exclusive, Some(Duration::ZERO)),
        Err(Error::Timeout { .. })
    ));
    // SIGKILL: no release, no revoke; only the lease's expiry frees it.
    host.kill().unwrap();
    let started = Instant::now();
    lock.acquire_with(Mode::Exclusive, Some(Duration::from_secs(2) + PROMPT))
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2) + PROMPT,
        "freed only after the bound"
    );
    assert!(lock.token().unwrap() > t1);
}

#[test]
fn a_paused_host_loses_its_lock_and_the_plugin_sees_it() {
    let cluster = EtcdCluster::start(3).unwrap();
    let grant = locks(&cluster, "fence");
    let stderr = cluster.dir().join("host.stderr");
    let mut host = locker(
        &[&grant, "--lease-ttl=2s", "--stats"],
        "/cluster/x",
        &stderr,
    );
    host.ask("acquire", "acquired").unwrap();
    assert_eq!(host.ask("is-locked", "").unwrap(), "true");
    let stale = token_of(&host.ask("token", "token ").unwrap());
    // The store the lock protects, played by the test: it accepts a write
    // only with a token at least as high as the highest it has seen.
    let mut highest = 0u64;
    let mut store = |token: u64| {
        let accepted = token >= highest;
        highest = highest.max(token);
        accepted
    };
    assert!(store(stale));
    // Pause the host past its TTL: its keep-alives stop, and the cluster
    // hands the lock on.
    signal(host.id(), "-STOP");
    let s = cluster.session();
    let lock = s.lock("fence/x").unwrap();
    let got = lock.acquire_with(Mode::Exclusive, Some(Duration::from_secs(2) + PROMPT));
    signal(host.id(), "-CONT");
    got.unwrap();
    let fresh = lock.token().unwrap();
    assert!(fresh > stale, "fresh token {fresh} after {stale}");
    assert!(store(fresh));
    // The stale holder's late write is refused by the store...
    assert!(!store(stale), "a stale write was accepted");
    // ...and inside the plugin the lock shows as lost.
    assert_eq!(host.ask("is-locked", "").unwrap(), "false");
    assert_eq!(host.ask("token", "token ").unwrap(), "token none");
    host.ask("release", "error: not-locked").unwrap();
    host.send("exit").unwrap();
    assert!(host.wait().unwrap().success());
    let stderr = std::fs::read_to_string(&stderr).unwrap();
    assert!(stderr.contains(", 1 lost;"), "stderr: {stderr}");
    assert!(stderr.contains("were lost"), "stderr: {stderr}");
    assert!(lock.is_locked());
}

#[test]
fn ending_the_instance_or_dropping_a_handle_releases_at_once() {
    let cluster = EtcdCluster::start(3).unwrap();
    let grant = locks(&cluster, "end");
    let s = cluster.session();
    let lock = s.lock("end/x").unwrap();
    // A long TTL: whatever frees the lock below, it is not the lease's expiry.
    let ttl = "--lease-ttl=300s";
    for (then, code) in [("exit", 0), ("exit 3", 3), ("trap", 134)] {
        let stderr = cluster.dir().join("host.stderr");
        let mut host = locker(&[&grant, ttl], "/cluster/x", &stderr);
        host.ask("acquire", "acquired").unwrap();
        host.send(then).unwrap();
        assert_eq!(host.wait().unwrap().code(), Some(code), "after {then:?}");
        // The host revoked its lease before it exited: free at the first try.
        lock.acquire_with(Mode::Exclusive, Some(Duration::ZERO))
            .unwrap_or_else(|e| panic!("still held after {then:?}: {e}"));
        lock.release().unwrap();
    }
    // Dropping the handle deletes its key (in the background: the waiter
    // gets it promptly, long before the TTL).
    let stderr = cluster.dir().join("host.stderr");
    let mut host = locker(&[&grant, ttl], "/cluster/x", &stderr);
    host.ask("acquire", "acquired").unwrap();
    host.ask("drop", "dropped").unwrap();
    lock.acquire_with(Mode::Exclusive, Some(PROMPT)).unwrap();
    // --timeout ends a plugin that waits: it exits 124, and its waiting
    // key is gone at once, leaving only ours in the queue.
    let mut waiting = locker(
        &[&grant, ttl, "--timeout=1s"],
        "/cluster/x",
        &cluster.dir().join("waiting.stderr"),
    );
    waiting.send("acquire").unwrap();
    assert_eq!(waiting.wait().unwrap().code(), Some(124));
    assert_eq!(s.holders("end/x").unwrap().len(), 1);
    host.send("exit").unwrap();
    host.wait().unwrap();
}

#[test]
fn a_plugin_has_the_file_lock_semantics_in_a_namespace() {
    let cluster = EtcdCluster::start(3).unwrap();
    let grant = locks(&cluster, "sem");
    let stderr = cluster.dir().join("host.stderr");
    let mut p = locker(&[&grant], "/cluster/a", &stderr);
    let s = cluster.session();
    let native = s.lock("sem/a").unwrap();
    // Exclusive, both ways; timeout 0 and a timeout that runs out.
    p.ask("acquire", "acquired").unwrap();
    assert!(matches!(
        native.acquire_with(Mode::Shared, Some(Duration::ZERO)),
        Err(Error::Timeout { .. })
    ));
    // Not reentrant, and another handle of the instance is a deadlock.
    p.ask("acquire 0", "error: deadlock").unwrap();
    p.ask("open /cluster/a", "opened 1").unwrap();
    p.ask("#1 acquire", "error: deadlock").unwrap();
    p.ask("#1 release", "error: not-locked").unwrap();
    p.ask("release", "released").unwrap();
    p.ask("release", "error: not-locked").unwrap();
    assert_eq!(p.ask("token", "token").unwrap(), "token none");
    native.acquire_with(Mode::Exclusive, Some(PROMPT)).unwrap();
    p.ask("acquire 0", "error: timeout").unwrap();
    p.ask("acquire-shared 200", "error: timeout").unwrap();
    // A waiting plugin gets the lock when the native holder lets go.
    p.send("acquire 60000").unwrap();
    wait_for_queue(&s, "sem/a", 2);
    native.release().unwrap();
    p.expect("acquired").unwrap();
    // Shared holders coexist; an exclusive one waits for them.
    p.ask("release", "released").unwrap();
    p.ask("acquire-shared", "acquired").unwrap();
    p.ask("#1 acquire-shared", "acquired").unwrap();
    native
        .acquire_with(Mode::Shared, Some(Duration::ZERO))
        .unwrap();
    native.release().unwrap();
    assert!(matches!(
        native.acquire_with(Mode::Exclusive, Some(Duration::ZERO)),
        Err(Error::Timeout { .. })
    ));
    p.send("exit").unwrap();
    p.wait().unwrap();
}

#[test]
fn names_stay_in_their_namespace_and_escapes_are_refused() {
    let cluster = EtcdCluster::start(1).unwrap();
    let data = cluster.dir().join("data");
    std::fs::create_dir(&data).unwrap();
    let grant_locks = locks(&cluster, "ns");
    let grant_dir = format!("--dir={}::/cluster/files", data.display());
    let stderr = cluster.dir().join("host.stderr");
    let mut p = locker(&[&grant_locks, &grant_dir], "/cluster/a/b.lock", &stderr);
    let s = cluster.session();
    // The guest's /cluster/a/b.lock is the etcd lock ns/a/b.lock.
    p.ask("acquire", "acquired").unwrap();
    assert_eq!(s.holders("ns/a/b.lock").unwrap().len(), 1);
    assert_eq!(
        cluster
            .ctl(&["get", "--prefix", "--keys-only", "a/"])
            .unwrap()
            .trim(),
        ""
    );
    // `..` is resolved in the guest path: it cannot climb out of the
    // namespace into another one, or into the cluster's other keys.
    let long = format!("/cluster/{}", "n".repeat(300));
    for (path, answer) in [
        ("/cluster/../other/x", "error: access-denied"),
        ("/cluster/../../x", "error: access-denied"),
        ("/clusterx/a", "error: access-denied"),
        ("relative", "error: access-denied"),
        ("/cluster", "error: invalid-path"),
        ("/cluster/a\\0b", "error: invalid-path"),
        ("/cluster/a/", "error: invalid-path"),
        (long.as_str(), "error: invalid-path"),
    ] {
        p.ask(&format!("open {path}"), answer)
            .unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    // `..` that stays inside is only a spelling: the same lock.
    p.ask("open /cluster/z/../a/b.lock", "opened 1").unwrap();
    p.ask("#1 acquire 0", "error: deadlock").unwrap();
    // The longest prefix wins: /cluster/files is a directory, where the
    // lock is a file and has no token.
    p.ask("open /cluster/files/f.lock", "opened 2").unwrap();
    p.ask("#2 acquire", "acquired").unwrap();
    assert_eq!(p.ask("#2 token", "token").unwrap(), "token none");
    assert!(data.join("f.lock").exists());
    // Nothing was made in etcd outside the namespace.
    let keys = cluster
        .ctl(&["get", "", "--prefix", "--keys-only"])
        .unwrap();
    for key in keys.lines().filter(|k| !k.is_empty()) {
        assert!(key.starts_with("ns/a/b.lock/"), "a key outside: {key}");
    }
    p.send("exit").unwrap();
    p.wait().unwrap();
}

fn run_host(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = host_command(args, guests::LOCKER, &["/cluster/x"]);
    c.envs(envs.iter().copied()).stdin(Stdio::null());
    c.output().unwrap()
}

fn refused(out: &Output, needle: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).is_empty(),
        "the plugin started"
    );
    assert!(stderr.contains(needle), "no {needle:?} in: {stderr}");
    stderr
}

#[test]
fn bad_grants_unreachable_clusters_and_bad_credentials_stop_the_run_before_it_starts() {
    let cluster = EtcdCluster::start(1).unwrap();
    let dir = cluster.dir().display().to_string();
    for (args, needle) in [
        (vec!["--locks=etcd://127.0.0.1:1/ns"], "NAMESPACE::GUEST"),
        (vec!["--locks=etcd://127.0.0.1:1/../x::/c"], ".."),
        (vec!["--locks=etcd://127.0.0.1:1/ns::../up"], "climbs above"),
        (vec!["--lease-ttl=5s"], "needs --locks"),
    ] {
        let out = run_host(&args, &[]);
        refused(&out, needle);
    }
    let overlap = [locks(&cluster, "ns"), format!("--dir={dir}::/cluster")];
    let out = run_host(&[&overlap[0], &overlap[1]], &[]);
    refused(&out, "both as a directory and as an etcd lock namespace");
    let twice = [locks(&cluster, "one"), locks(&cluster, "two")];
    let out = run_host(&[&twice[0], &twice[1]], &[]);
    refused(&out, "granted as two etcd lock namespaces");

    // Nothing listens there: a clear error within the connect timeout.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let out = run_host(
        &[&format!("--locks=etcd://127.0.0.1:{port}/ns::/cluster")],
        &[],
    );
    let stderr = refused(&out, "unavailable");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5) + PROMPT);

    // Credentials: wrong, missing, then right.
    cluster.enable_auth("s3cret-pw").unwrap();
    let grant = locks(&cluster, "ns");
    let wrong = [
        ("LOCKET_ETCD_USER", "root"),
        ("LOCKET_ETCD_PASSWORD", "wrong-pw"),
    ];
    let stderr = refused(&run_host(&[&grant], &wrong), "refused the credentials");
    assert!(
        !stderr.contains("wrong-pw"),
        "the password leaked: {stderr}"
    );
    refused(&run_host(&[&grant], &[]), "refused the credentials");
    let right = [
        ("LOCKET_ETCD_USER", "root"),
        ("LOCKET_ETCD_PASSWORD", "s3cret-pw"),
    ];
    let mut c = host_command(&[&grant], guests::LOCKER, &["/cluster/x"]);
    c.envs(right);
    let mut p = LineProcess::spawn_within(c, PROMPT * 3).unwrap();
    p.ask("acquire", "acquired").unwrap();
    assert!(p.ask("token", "token ").unwrap() != "token none");
    p.send("exit").unwrap();
    assert!(p.wait().unwrap().success());
}

#[test]
fn without_quorum_a_plugins_acquire_fails_with_io_within_its_timeout() {
    let mut cluster = EtcdCluster::start(3).unwrap();
    let grant = locks(&cluster, "quorum");
    let stderr = cluster.dir().join("host.stderr");
    let mut p = locker(&[&grant], "/cluster/x", &stderr);
    p.ask("acquire", "acquired").unwrap();
    p.ask("release", "released").unwrap();
    cluster.kill(0);
    cluster.kill(1);
    let started = Instant::now();
    let answer = p.ask("acquire 3000", "error: io").unwrap();
    assert!(answer.contains("unavailable"), "{answer}");
    assert!(
        !answer.contains("127.0.0.1"),
        "the guest was told the cluster's addresses: {answer}"
    );
    assert!(started.elapsed() < Duration::from_secs(3) + PROMPT);
    assert_eq!(p.ask("is-locked", "").unwrap(), "false");
    cluster.restart(0).unwrap();
    cluster.restart(1).unwrap();
    cluster.wait_healthy().unwrap();
    p.ask("acquire 60000", "acquired").unwrap();
    p.send("exit").unwrap();
    p.wait().unwrap();
}
