//! Crashes and faults: killed hosts and holders, and long runs that must not
//! leak descriptors or threads.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use locket_tests::{LineProcess, PROMPT, Peer, entries, grant, guests, host_command, posix_timers};

/// A small deterministic generator, seeded from the clock and printed, so a
/// failing run can be replayed by setting LOCKET_TEST_SEED.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let seed = std::env::var("LOCKET_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("LOCKET_TEST_SEED={seed}");
        Self(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Waits until the number in `counter` changes, which shows that the plugin
/// has started taking and releasing the lock.
fn wait_until_counting(counter: &Path, plugin: &mut std::process::Child) {
    let read = || {
        std::fs::read_to_string(counter)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
    };
    let before = read();
    let started = std::time::Instant::now();
    loop {
        let now = read();
        if now.is_some() && now != before {
            return;
        }
        assert!(
            plugin.try_wait().unwrap().is_none(),
            "the counter plugin ended before it counted"
        );
        assert!(
            started.elapsed() < PROMPT,
            "the counter plugin never counted"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_sigkilled_host_never_leaves_its_plugins_lock_held() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("counter"), "0\n").unwrap();
    let mut rng = Rng::new();
    let mut waiter = LineProcess::native(&dir.path().join("counter.lock")).unwrap();
    for round in 0..50 {
        // The counter plugin takes and releases the lock as fast as it can, so
        // a kill lands before, during or after a hold.
        let mut plugin = host_command(
            &[&grant(dir.path())],
            guests::COUNTER,
            &["/data/counter.lock", "/data/counter", "1000000"],
        )
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        // Once the plugin is counting, kill it at a random moment of its loop.
        wait_until_counting(&dir.path().join("counter"), &mut plugin);
        std::thread::sleep(Duration::from_millis(rng.below(20)));
        plugin.kill().unwrap();
        plugin.wait().unwrap();
        let line = waiter.ask("acquire 10000", "").unwrap();
        assert_eq!(line, "acquired", "round {round}");
        waiter.ask("release", "released").unwrap();
    }
}

#[test]
fn a_host_sigkilled_while_its_plugin_holds_the_lock_frees_it_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new();
    let mut waiter = LineProcess::native(&dir.path().join("x.lock")).unwrap();
    for round in 0..50 {
        let mut plugin = Peer::Plugin.start(dir.path(), "x.lock").unwrap();
        let mode = if round % 2 == 0 {
            "acquire"
        } else {
            "acquire-shared"
        };
        plugin.ask(mode, "acquired").unwrap();
        waiter.send("acquire").unwrap();
        std::thread::sleep(Duration::from_millis(rng.below(20)));
        assert_eq!(
            waiter.maybe_line(Duration::ZERO),
            None,
            "round {round}: got in early"
        );
        plugin.kill().unwrap();
        assert_eq!(
            waiter.line_within(PROMPT).unwrap(),
            "acquired",
            "round {round}"
        );
        waiter.ask("release", "released").unwrap();
    }
}

#[test]
fn a_sigkilled_native_holder_frees_the_lock_for_a_waiting_plugin() {
    let dir = tempfile::tempdir().unwrap();
    for request in ["acquire", "acquire 60000"] {
        let mut holder = LineProcess::native(&dir.path().join("x.lock")).unwrap();
        holder.ask("acquire", "acquired").unwrap();
        let mut plugin = Peer::Plugin.start(dir.path(), "x.lock").unwrap();
        plugin.send(request).unwrap();
        assert_eq!(plugin.maybe_line(Duration::from_millis(100)), None);
        holder.kill().unwrap();
        assert_eq!(plugin.line_within(PROMPT).unwrap(), "acquired");
    }
}

#[test]
fn ten_thousand_cycles_leak_no_descriptor_or_thread_in_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let mut holder = LineProcess::native(&dir.path().join("held.lock")).unwrap();
    holder.ask("acquire", "acquired").unwrap();
    let mut plugin = LineProcess::plugin(&[&grant(dir.path())], guests::LOCKER, &[]).unwrap();
    let pid = plugin.id();
    let cycles = |plugin: &mut LineProcess, n: u32| {
        plugin
            .send(&format!("churn {n} /data/free.lock /data/held.lock"))
            .unwrap();
        assert_eq!(
            plugin.line_within(PROMPT * 6).unwrap(),
            format!("churned {n}")
        );
    };
    cycles(&mut plugin, 10); // one-time set-up (signal handler, caches) first
    let fds = entries(format!("/proc/{pid}/fd"));
    let threads = entries(format!("/proc/{pid}/task"));
    let timer_count = posix_timers(pid);
    cycles(&mut plugin, 10_000);
    assert_eq!(
        entries(format!("/proc/{pid}/fd")),
        fds,
        "descriptors leaked"
    );
    assert_eq!(
        entries(format!("/proc/{pid}/task")),
        threads,
        "threads leaked"
    );
    assert_eq!(posix_timers(pid), timer_count, "POSIX timers leaked");
    eprintln!(
        "after 10,000 cycles: {fds} descriptors, {threads} threads, {timer_count} timers, as before"
    );
}
