//! locket's benchmark harness.
//!
//! `locket-bench [--rounds N] [--out FILE]` measures, in one run on one
//! machine, with the contenders interleaved so that drift cancels:
//!
//! - uncontended acquire+release per operation: a raw std `File::lock`/`unlock`
//!   loop (the floor) against the `locket` crate, with and without a timeout,
//!   and a guest plugin's loop inside `locket-host` (minus an empty loop);
//! - the start-up of a small plugin under `locket-host run`, cold (no cache)
//!   and warm (compilation cache);
//! - cross-process hand-off latency, from the holder's release to the waiter's
//!   acquire, for a raw blocking `flock` waiter (the floor) and `locket`
//!   waiters with and without a timeout.
//!
//! It prints a Markdown report and, with `--out`, writes it to FILE.
//! `locket-bench waiter KIND PATH` is the waiter process it spawns.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

/// The waiter kinds, the floor first.
const WAITERS: [&str; 3] = ["flock", "locket", "locket-timeout"];

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [cmd, kind, path] = args.as_slice()
        && cmd == "waiter"
    {
        return waiter(kind, Path::new(path));
    }
    let mut rounds = 500;
    let mut out = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--rounds" => rounds = it.next().context("--rounds N")?.parse()?,
            "--out" => out = Some(it.next().context("--out FILE")?.clone()),
            other => {
                bail!("unknown argument {other:?}; usage: locket-bench [--rounds N] [--out FILE]")
            }
        }
    }
    let dir = tempfile::tempdir()?;
    let mut report = String::new();
    writeln!(report, "# locket benchmark results\n")?;
    writeln!(report, "Machine: {}\n", machine())?;
    uncontended(dir.path(), rounds, &mut report)?;
    startup(dir.path(), &mut report)?;
    timeout_accuracy(&dir.path().join("timeout.lock"), &mut report)?;
    handoff(&dir.path().join("handoff.lock"), rounds, &mut report)?;
    print!("{report}");
    if let Some(out) = out {
        std::fs::write(&out, &report).with_context(|| format!("writing {out}"))?;
    }
    Ok(())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    format!("{cpu}, {cores} cores, Linux {kernel}")
}

/// Per-operation cost of an uncontended acquire+release.
fn uncontended(dir: &Path, rounds: usize, report: &mut String) -> anyhow::Result<()> {
    let path = dir.join("uncontended.lock");
    let raw = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    let plain = locket::lock_file(&path);
    let timed = locket::lock_file(&path).with_timeout(Some(Duration::from_secs(5)));
    let mut guest = Guest::start(dir)?;
    let ops = 2_000;
    let mut samples: [Vec<f64>; 4] = Default::default();
    // Interleave: each round runs a batch of every contender.
    for _ in 0..rounds.max(20) {
        let t = Instant::now();
        for _ in 0..ops {
            raw.lock()?;
            raw.unlock()?;
        }
        samples[0].push(t.elapsed().as_nanos() as f64 / ops as f64);
        for (slot, lock) in [(1, &plain), (2, &timed)] {
            let t = Instant::now();
            for _ in 0..ops {
                lock.acquire()?;
                lock.release()?;
            }
            samples[slot].push(t.elapsed().as_nanos() as f64 / ops as f64);
        }
        samples[3].push(guest.bench(ops)?);
    }
    guest.finish()?;
    let floor = median(&mut samples[0].clone());
    let native = median(&mut samples[1].clone());
    writeln!(report, "## Uncontended acquire+release\n")?;
    writeln!(
        report,
        "Median of per-batch means, {ops} operations a batch, {} batches each, interleaved. \
         The guest's loop runs inside the plugin (`locker.wasm bench`), timed by the guest, \
         minus an empty loop of the same length.\n",
        rounds.max(20)
    )?;
    writeln!(
        report,
        "| contender | ns/op | ratio to floor | ratio to `locket` |\n|---|---:|---:|---:|"
    )?;
    for (name, s) in [
        "raw std `File::lock` (floor)",
        "`locket`, no timeout",
        "`locket`, timeout 5 s",
        "guest in `locket-host`",
    ]
    .iter()
    .zip(samples.iter_mut())
    {
        let m = median(s);
        writeln!(
            report,
            "| {name} | {m:.0} | {:.2}× | {:.2}× |",
            m / floor,
            m / native
        )?;
    }
    writeln!(report)?;
    Ok(())
}

/// A locker plugin under `locket-host`, driven over its stdin.
struct Guest {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Guest {
    fn start(dir: &Path) -> anyhow::Result<Self> {
        let grant = format!("--dir={}::/data", dir.display());
        let mut child = locket_tests::host_command(
            &[&grant],
            locket_tests::guests::LOCKER,
            &["/data/uncontended.lock"],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
        let stdin = child.stdin.take().context("stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().context("stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        anyhow::ensure!(line.trim() == "ready", "locker said {line:?}");
        Ok(Self {
            child,
            stdin,
            stdout,
        })
    }

    /// ns per acquire+release over `ops` cycles, minus the empty loop.
    fn bench(&mut self, ops: u64) -> anyhow::Result<f64> {
        writeln!(self.stdin, "bench {ops}")?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let nums: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|w| w.parse().ok())
            .collect();
        let [locked, empty] = nums.as_slice() else {
            bail!("locker said {line:?}");
        };
        Ok((locked - empty) / ops as f64)
    }

    fn finish(mut self) -> anyhow::Result<()> {
        drop(self.stdin);
        self.child.wait()?;
        Ok(())
    }
}

/// Start-up of a small plugin: `locket-host run locker.wasm` with nothing to
/// do, cold (`--no-cache`) and warm (a filled compilation cache).
fn startup(dir: &Path, report: &mut String) -> anyhow::Result<()> {
    let size = std::fs::metadata(locket_tests::guests::LOCKER)?.len();
    let grant = format!("--dir={}::/data", dir.display());
    let cache = dir.join("cache");
    let time = |args: &[&str]| -> anyhow::Result<f64> {
        let t = Instant::now();
        let status = locket_tests::host_command(args, locket_tests::guests::LOCKER, &[])
            .env("LOCKET_CACHE_DIR", &cache)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()?;
        anyhow::ensure!(status.success(), "locket-host failed: {status}");
        Ok(t.elapsed().as_secs_f64() * 1000.0)
    };
    time(&[&grant])?; // fills the cache
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for _ in 0..10 {
        cold.push(time(&[&grant, "--no-cache"])?);
        warm.push(time(&[&grant])?);
    }
    let cold_ms = median(&mut cold);
    let warm_ms = median(&mut warm);
    writeln!(report, "## Plugin start-up\n")?;
    writeln!(
        report,
        "`locket-host run` of `locker.wasm` ({} KiB) that exits at once, whole process, median of 10, interleaved.\n",
        size / 1024
    )?;
    writeln!(report, "| start | ms | ratio to cold |\n|---|---:|---:|")?;
    writeln!(report, "| cold (`--no-cache`) | {cold_ms:.1} | 1.00× |")?;
    writeln!(
        report,
        "| warm (compilation cache) | {warm_ms:.1} | {:.2}× |",
        warm_ms / cold_ms
    )?;
    writeln!(report)?;
    Ok(())
}

/// How late a timed-out acquire returns, against a lock held elsewhere.
fn timeout_accuracy(path: &Path, report: &mut String) -> anyhow::Result<()> {
    let holder = locket::lock_file(path);
    holder.acquire()?;
    writeln!(report, "## Timeout accuracy\n")?;
    writeln!(
        report,
        "A `locket` acquire with a timeout, against a lock held by another handle: \
         how long after the timeout it returns. 50 tries each.\n"
    )?;
    writeln!(
        report,
        "| timeout | median late µs | max late µs |\n|---|---:|---:|"
    )?;
    for ms in [1, 10, 50] {
        let timeout = Duration::from_millis(ms);
        let waiter = locket::lock_file(path).with_timeout(Some(timeout));
        let mut late = Vec::new();
        for _ in 0..50 {
            let t = Instant::now();
            match waiter.acquire() {
                Err(locket::LockError::Timeout { .. }) => {}
                other => bail!("expected a timeout, got {other:?}"),
            }
            let waited = t.elapsed();
            anyhow::ensure!(waited >= timeout, "gave up early after {waited:?}");
            late.push((waited - timeout).as_secs_f64() * 1e6);
        }
        writeln!(
            report,
            "| {ms} ms | {:.0} | {:.0} |",
            median(&mut late),
            percentile(&mut late, 1.0)
        )?;
    }
    writeln!(report)?;
    Ok(())
}

struct Waiter {
    kind: &'static str,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    latencies: Vec<f64>,
}

impl Waiter {
    fn line(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("waiter {} exited", self.kind);
        }
        Ok(line.trim().to_owned())
    }
}

/// Hand-off latency from a holder's release to a waiter in another process.
fn handoff(path: &Path, rounds: usize, report: &mut String) -> anyhow::Result<()> {
    let holder = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let me = std::env::current_exe()?;
    let mut waiters = WAITERS
        .iter()
        .map(|&kind| {
            let mut child = Command::new(&me)
                .args(["waiter", kind])
                .arg(path)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()?;
            let stdin = child.stdin.take().context("stdin")?;
            let stdout = BufReader::new(child.stdout.take().context("stdout")?);
            Ok(Waiter {
                kind,
                child,
                stdin,
                stdout,
                latencies: Vec::new(),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    for _ in 0..rounds {
        for w in &mut waiters {
            holder.lock()?;
            writeln!(w.stdin, "go")?;
            w.stdin.flush()?;
            if w.line()? != "waiting" {
                bail!("waiter {} is confused", w.kind);
            }
            // Let the waiter block in the kernel before we release.
            std::thread::sleep(Duration::from_millis(2));
            let released = now_ns();
            holder.unlock()?;
            let acquired: u128 = w.line()?.parse()?;
            w.latencies
                .push(acquired.saturating_sub(released) as f64 / 1000.0);
        }
    }
    for w in &mut waiters {
        drop(writeln!(w.stdin, "exit"));
        w.child.wait()?;
    }
    let floor = median(&mut waiters[0].latencies.clone());
    writeln!(report, "## Cross-process hand-off latency\n")?;
    writeln!(
        report,
        "From the holder's release to the waiter's acquire, wall clock, {rounds} hand-offs per waiter, interleaved.\n"
    )?;
    writeln!(
        report,
        "| waiter | median µs | p99 µs | max µs | median vs floor |\n|---|---:|---:|---:|---:|"
    )?;
    for w in &mut waiters {
        let name = match w.kind {
            "flock" => "raw blocking `flock` (floor)",
            "locket" => "`locket`, no timeout",
            _ => "`locket`, timeout 60 s",
        };
        let s = &mut w.latencies;
        let m = median(s);
        writeln!(
            report,
            "| {name} | {m:.0} | {:.0} | {:.0} | {:.2}× |",
            percentile(s, 0.99),
            percentile(s, 1.0),
            m / floor
        )?;
    }
    writeln!(report)?;
    Ok(())
}

/// One waiter process: on each `go`, says `waiting`, blocks for the lock,
/// takes the time, releases, and prints the time it acquired.
fn waiter(kind: &str, path: &Path) -> anyhow::Result<()> {
    let raw = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let lock = locket::lock_file(path);
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        if line? != "go" {
            return Ok(());
        }
        writeln!(out, "waiting")?;
        out.flush()?;
        let acquired = match kind {
            "flock" => {
                raw.lock()?;
                let t = now_ns();
                raw.unlock()?;
                t
            }
            "locket" | "locket-timeout" => {
                let timeout = (kind == "locket-timeout").then_some(Duration::from_secs(60));
                lock.acquire_with(locket::Mode::Exclusive, timeout)?;
                let t = now_ns();
                lock.release()?;
                t
            }
            other => bail!("unknown waiter kind {other}"),
        };
        writeln!(out, "{acquired}")?;
        out.flush()?;
    }
    Ok(())
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn median(s: &mut [f64]) -> f64 {
    percentile(s, 0.5)
}

fn percentile(s: &mut [f64], p: f64) -> f64 {
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(f64::total_cmp);
    let i = ((s.len() - 1) as f64 * p).round() as usize;
    s[i]
}
