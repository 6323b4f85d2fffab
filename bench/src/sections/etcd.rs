//! Locks in an etcd cluster: a guest through `locket-host --locks`, and the
//! `locket-etcd` Rust API, against raw `etcd-client` calls, on one 3-member
//! cluster on loopback ports, started for the run.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use etcd_client::{Client, EventType, LockOptions, WatchFilterType, WatchOptions};
use locket_etcd::{Address, Connect, Mode};
use locket_tests::etcd::EtcdCluster;
use locket_tests::{LineProcess, PROMPT, guests, host_command};

use crate::report::Figures;
use crate::stats::median;

/// How much of each measurement a run takes.
pub struct Sizes {
    /// Interleaved batches of uncontended acquire+release.
    pub batches: usize,
    /// Cycles per batch.
    pub cycles: usize,
    /// Hand-offs per waiter.
    pub handoffs: usize,
    /// Length of each throughput run.
    pub contend_ms: u64,
}

/// The etcd section of the report.
pub fn run(
    dir: &Path,
    sizes: &Sizes,
    report: &mut String,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    let cluster = EtcdCluster::start(3)?;
    let runtime = runtime()?;
    let endpoints: Vec<String> = cluster.endpoints().split(',').map(str::to_owned).collect();
    writeln!(report, "## Locks in etcd\n")?;
    writeln!(
        report,
        "A 3-member etcd {} cluster on loopback ports, its data in a scratch directory \
         (so every write waits for an fsync on this machine's disk). Raw `etcd-client` is the \
         floor: the server's own lock service (`Lock` and `Unlock` calls, as `etcdctl lock` \
         uses it) and a plain watch. Every contender talks to the first member unless said \
         otherwise.\n",
        etcd_version()
    )?;
    uncontended(&endpoints, &runtime, sizes, report, figures)?;
    handoff(&endpoints, sizes, report, figures)?;
    throughput(&endpoints, dir, sizes, report, figures)?;
    Ok(())
}

fn etcd_version() -> String {
    locket_tests::etcd::etcd_exe()
        .ok()
        .and_then(|exe| {
            std::process::Command::new(exe)
                .arg("--version")
                .output()
                .ok()
        })
        .and_then(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("etcd Version: ").map(str::to_owned))
        })
        .unwrap_or_else(|| "(unknown version)".to_owned())
}

/// A runtime on the calling thread, for raw etcd-client calls.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn connect_raw(runtime: &tokio::runtime::Runtime, endpoint: &str) -> anyhow::Result<Client> {
    runtime
        .block_on(Client::connect([format!("http://{endpoint}")], None))
        .context("connecting etcd-client")
}

/// A guest (`locker.wasm`) under `locket-host`, with the namespace `ns`
/// granted as `/cluster` (the endpoints in `endpoints` order), handle 0 on
/// `/cluster/NAME`, and `data` granted as `/data`.
fn guest(endpoints: &[String], ns: &str, name: &str, data: &Path) -> anyhow::Result<LineProcess> {
    let locks = format!("--locks=etcd://{}/{ns}::/cluster", endpoints.join(","));
    let dirs = format!("--dir={}::/data", data.display());
    let command = host_command(
        &[&locks, &dirs, "--lease-ttl=60s"],
        guests::LOCKER,
        &[&format!("/cluster/{name}")],
    );
    LineProcess::spawn_within(command, PROMPT * 3)
}

fn session(endpoints: &[String]) -> anyhow::Result<locket_etcd::Session> {
    let address = Address::parse(&format!("etcd://{}/x", endpoints.join(",")))?;
    Ok(Connect::new(address.cluster)
        .lease_ttl(Duration::from_secs(60))
        .session()?)
}

fn uncontended(
    endpoints: &[String],
    runtime: &tokio::runtime::Runtime,
    sizes: &Sizes,
    report: &mut String,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    let n = sizes.cycles;
    let mut raw = connect_raw(runtime, &endpoints[0])?;
    let lease = runtime.block_on(raw.lease_grant(60, None))?.id();
    let native = session(endpoints)?;
    let native_lock = native.lock("u/native")?;
    let mut plugin = guest(endpoints, "u", "guest", &std::env::temp_dir())?;
    let (mut raw_us, mut native_us, mut guest_us) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..sizes.batches {
        let started = Instant::now();
        runtime.block_on(async {
            for _ in 0..n {
                let held = raw
                    .lock("u/raw", Some(LockOptions::new().with_lease(lease)))
                    .await?;
                raw.unlock(held.key()).await?;
            }
            Ok::<(), etcd_client::Error>(())
        })?;
        raw_us.push(started.elapsed().as_secs_f64() * 1e6 / n as f64);
        let started = Instant::now();
        for _ in 0..n {
            native_lock.acquire_with(Mode::Exclusive, None)?;
            native_lock.release()?;
        }
        native_us.push(started.elapsed().as_secs_f64() * 1e6 / n as f64);
        plugin.send(&format!("bench {n}"))?;
        guest_us.push(plugin.number::<f64>()? / 1000.0);
    }
    plugin.send("exit")?;
    plugin.wait()?;
    let intro = format!(
        "{} batches of {n} cycles each, interleaved; the median of the batch means. The guest \
         times its own loop (`bench N`).",
        sizes.batches
    );
    let table = Table {
        title: "Uncontended acquire+release",
        intro: &intro,
        header: "| contender | µs per cycle | vs raw |\n|---|---:|---:|",
        floor: "raw `etcd-client` Lock + Unlock (floor)",
        figure: "etcd guest/raw",
    };
    table.write(
        report,
        figures,
        [raw_us, native_us, guest_us],
        |label, _, m, floor| format!("| {label} | {m:.0} | {:.2}× |", m / floor),
    )
}

/// The wall clock in ns since the Unix epoch, as the guest reports it.
fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// A raw watch waiter on its own thread and connection: for each key it is
/// sent, it watches that key's delete and answers the wall-clock time the
/// event arrived.
fn raw_watcher(endpoint: String) -> (mpsc::Sender<Vec<u8>>, mpsc::Receiver<anyhow::Result<u128>>) {
    let (keys_tx, keys) = mpsc::channel::<Vec<u8>>();
    let (times, times_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let runtime = match runtime() {
            Ok(r) => r,
            Err(e) => {
                let _ = times.send(Err(e.into()));
                return;
            }
        };
        let client = match connect_raw(&runtime, &endpoint) {
            Ok(c) => c,
            Err(e) => {
                let _ = times.send(Err(e));
                return;
            }
        };
        for key in keys {
            let mut client = client.clone();
            let started = times.clone();
            let at = runtime.block_on(async move {
                let options = WatchOptions::new().with_filters([WatchFilterType::NoPut]);
                let mut stream = client.watch(key, Some(options)).await?;
                // The watch is in place: say so with a zero time.
                let _ = started.send(Ok(0));
                loop {
                    let answer = stream.message().await?.context("the watch stream ended")?;
                    if answer
                        .events()
                        .iter()
                        .any(|e| e.event_type() == EventType::Delete)
                    {
                        return anyhow::Ok(now_ns());
                    }
                }
            });
            let _ = times.send(at);
        }
    });
    (keys_tx, times_rx)
}

fn handoff(
    endpoints: &[String],
    sizes: &Sizes,
    report: &mut String,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    let runtime = runtime()?;
    let mut holder = connect_raw(&runtime, &endpoints[0])?;
    let lease = runtime.block_on(holder.lease_grant(60, None))?.id();
    let watch = session(endpoints)?;
    let (keys, times) = raw_watcher(endpoints[0].clone());
    let mut plugin = guest(endpoints, "h", "x", &std::env::temp_dir())?;
    let native = session(endpoints)?;
    let (mut raw_us, mut native_us, mut guest_us) = (Vec::new(), Vec::new(), Vec::new());
    let queued = |n: usize| -> anyhow::Result<()> {
        let until = Instant::now() + PROMPT;
        while watch.holders("h/x")?.len() < n {
            anyhow::ensure!(Instant::now() < until, "the waiter never queued");
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    };
    for _ in 0..sizes.handoffs {
        // The raw watch waiter.
        let held =
            runtime.block_on(holder.lock("h/x", Some(LockOptions::new().with_lease(lease))))?;
        keys.send(held.key().to_vec())?;
        anyhow::ensure!(times.recv()?? == 0, "the watch did not start");
        let released = now_ns();
        runtime.block_on(holder.unlock(held.key()))?;
        let at = times.recv_timeout(PROMPT)??;
        raw_us.push(at.saturating_sub(released) as f64 / 1000.0);

        // The guest waiter.
        let held =
            runtime.block_on(holder.lock("h/x", Some(LockOptions::new().with_lease(lease))))?;
        plugin.ask("handoff", "waiting")?;
        queued(2)?;
        let released = now_ns();
        runtime.block_on(holder.unlock(held.key()))?;
        let at: u128 = plugin.number()?;
        guest_us.push(at.saturating_sub(released) as f64 / 1000.0);

        // The Rust API waiter, on a thread of this process.
        let held =
            runtime.block_on(holder.lock("h/x", Some(LockOptions::new().with_lease(lease))))?;
        let at = std::thread::scope(|s| -> anyhow::Result<u128> {
            let waiter = s.spawn(|| -> anyhow::Result<u128> {
                let lock = native.lock("h/x")?;
                lock.acquire_with(Mode::Exclusive, Some(PROMPT))?;
                let at = now_ns();
                lock.release()?;
                Ok(at)
            });
            queued(2)?;
            let released = now_ns();
            runtime.block_on(holder.unlock(held.key()))?;
            let at = waiter
                .join()
                .map_err(|_| anyhow::anyhow!("the waiter panicked"))??;
            Ok(at.saturating_sub(released))
        })?;
        native_us.push(at as f64 / 1000.0);
    }
    drop(keys);
    plugin.send("exit")?;
    plugin.wait()?;
    let intro = format!(
        "From the holder's `Unlock` call (raw `etcd-client`) to the waiter's acquire, by the \
         wall clock, {} hand-offs per waiter, interleaved. The floor is a raw watch on the \
         holder's key: the moment its delete event arrives.",
        sizes.handoffs
    );
    let table = Table {
        title: "Hand-off latency",
        intro: &intro,
        header: "| waiter | median µs | max µs | median vs floor |\n|---|---:|---:|---:|",
        floor: "raw watch on the holder's key (floor)",
        figure: "etcd handoff guest/watch",
    };
    table.write(
        report,
        figures,
        [raw_us, native_us, guest_us],
        |label, values, m, floor| {
            let max = values.iter().copied().fold(0.0, f64::max);
            format!("| {label} | {m:.0} | {max:.0} | {:.2}× |", m / floor)
        },
    )
}

/// A table of the raw floor, the Rust API and the guest, in the report.
struct Table<'a> {
    title: &'a str,
    intro: &'a str,
    /// The header row and its separator.
    header: &'a str,
    /// The floor's label.
    floor: &'a str,
    /// The name under which the guest's ratio to the floor is recorded.
    figure: &'static str,
}

impl Table<'_> {
    /// Writes the table: a row for each of the floor, the Rust API and the
    /// guest (`samples`, in that order), as `row` formats it from its
    /// label, its samples, their median and the floor's median; and
    /// records the guest's ratio to the floor.
    fn write(
        &self,
        report: &mut String,
        figures: &mut Figures,
        samples: [Vec<f64>; 3],
        row: impl Fn(&str, &[f64], f64, f64) -> String,
    ) -> anyhow::Result<()> {
        let [mut raw, mut native, mut guest] = samples;
        let floor = median(&mut raw.clone());
        writeln!(
            report,
            "### {}\n\n{}\n\n{}",
            self.title, self.intro, self.header
        )?;
        for (label, values) in [
            (self.floor, &mut raw),
            ("`locket-etcd` (Rust API)", &mut native),
            ("guest under `locket-host --locks`", &mut guest),
        ] {
            let m = median(values);
            writeln!(report, "{}", row(label, values, m, floor))?;
            if label.starts_with("guest") {
                figures.record(self.figure, m / floor);
            }
        }
        writeln!(report)?;
        Ok(())
    }
}

fn throughput(
    endpoints: &[String],
    dir: &Path,
    sizes: &Sizes,
    report: &mut String,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    let n = 8;
    let ms = sizes.contend_ms;
    // Contender i talks to member i % 3 first, as if on three hosts.
    let rotated = |i: usize| -> Vec<String> {
        let mut e = endpoints.to_vec();
        e.rotate_left(i % endpoints.len());
        e
    };
    // Raw: 8 threads, each with its own connection, Lock / increment / Unlock.
    let raw_file = dir.join("etcd-raw-counter");
    std::fs::write(&raw_file, "0")?;
    let barrier = std::sync::Barrier::new(n);
    let raw_counts = std::thread::scope(|s| -> anyhow::Result<Vec<u64>> {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (endpoint, file, barrier) = (rotated(i)[0].clone(), &raw_file, &barrier);
                s.spawn(move || -> anyhow::Result<u64> {
                    let runtime = runtime()?;
                    let mut client = connect_raw(&runtime, &endpoint)?;
                    let lease = runtime.block_on(client.lease_grant(60, None))?.id();
                    barrier.wait();
                    let until = Instant::now() + Duration::from_millis(ms);
                    let mut done = 0;
                    while Instant::now() < until {
                        let held = runtime.block_on(
                            client.lock("t/raw", Some(LockOptions::new().with_lease(lease))),
                        )?;
                        increment(file)?;
                        runtime.block_on(client.unlock(held.key()))?;
                        done += 1;
                    }
                    Ok(done)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a raw contender panicked"))?
            })
            .collect()
    })?;
    // Ours: 8 guests, each a locket-host process.
    let data = dir.join("etcd-guests");
    std::fs::create_dir_all(&data)?;
    std::fs::write(data.join("counter"), "0")?;
    let mut plugins = (0..n)
        .map(|i| guest(&rotated(i), "t", "guest", &data))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for p in &mut plugins {
        p.send(&format!("contend /data/counter {ms}"))?;
    }
    let mut guest_counts = Vec::new();
    for p in &mut plugins {
        guest_counts.push(p.number::<u64>()?);
    }
    for mut p in plugins {
        p.send("exit")?;
        p.wait()?;
    }
    writeln!(report, "### Throughput, 8 contenders on 3 members\n")?;
    writeln!(
        report,
        "8 contenders increment one counter file under one etcd lock for {ms} ms: read, add \
         one, write, release. Contender i talks to member i mod 3 first, as clients on three \
         hosts would. Raw contenders are threads with a connection each; guests are \
         `locket-host` processes. Lost updates compare the file with the total.\n"
    )?;
    writeln!(
        report,
        "| contenders | ops/s | vs raw | busiest / least served | lost updates |\n\
         |---|---:|---:|---:|---:|"
    )?;
    let mut floor = None;
    for (label, counts, file) in [
        (
            "raw `etcd-client` Lock / Unlock loops (floor)",
            &raw_counts,
            raw_file,
        ),
        (
            "guests under `locket-host --locks`",
            &guest_counts,
            data.join("counter"),
        ),
    ] {
        let total: u64 = counts.iter().sum();
        let stored: u64 = std::fs::read_to_string(&file)?.trim().parse()?;
        let ops = total as f64 / (ms as f64 / 1000.0);
        let floor = *floor.get_or_insert(ops);
        let most = counts.iter().copied().max().unwrap_or(0);
        let least = counts.iter().copied().min().unwrap_or(0);
        let fairness = if least > 0 {
            format!("{:.1}", most as f64 / least as f64)
        } else {
            "∞ (one got none)".to_owned()
        };
        let lost = total.abs_diff(stored);
        writeln!(
            report,
            "| {label} | {ops:.0} | {:.2}× | {fairness} | {lost} |",
            ops / floor
        )?;
        if label.starts_with("guests") {
            figures.record("etcd throughput 8", ops / floor);
        }
        figures.record_max("etcd lost", lost as f64);
    }
    writeln!(report)?;
    Ok(())
}

/// Adds one to the number in `file`.
fn increment(file: &Path) -> anyhow::Result<()> {
    let value: u64 = std::fs::read_to_string(file)?.trim().parse().unwrap_or(0);
    std::fs::write(file, format!("{}", value + 1))?;
    Ok(())
}
