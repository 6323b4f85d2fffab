//! locket's benchmark harness.
//!
//! `locket-bench [--rounds N] [--out FILE] [--plot FILE.svg] [--smoke]`
//! measures, in one run on one machine, with the contenders interleaved so
//! that drift cancels:
//!
//! - uncontended acquire+release per operation: a raw std `File::lock`/`unlock`
//!   loop (the floor), the `locket` crate, a guest plugin's loop inside
//!   `locket-host` (minus an empty loop), locket.py (timeout None and 0) and
//!   py-filelock;
//! - cross-process hand-off latency, from the holder's release to the waiter's
//!   acquire, for a raw blocking `flock` waiter (the floor), `locket` and guest
//!   waiters with and without a timeout, locket.py and py-filelock; with
//!   `--plot`, their CDF as an SVG;
//! - throughput and fairness of 2 to 16 contending processes of mixed kinds,
//!   with lost updates counted;
//! - plugin start-up, small and large (componentize-py), cold, cached and
//!   precompiled;
//! - the host's memory with 1 to 64 waiting guest instances;
//! - how late a timed-out acquire returns.
//!
//! It prints a Markdown report and, with `--out`, writes it to FILE.
//! `--smoke` is a short run for the test suite. `locket-bench contender KIND
//! PATH` is the native contender process it spawns.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

const USAGE: &str = "usage: locket-bench [--rounds N] [--out FILE] [--plot FILE.svg] [--smoke]";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [cmd, kind, path] = args.as_slice()
        && cmd == "contender"
    {
        return contender(kind, Path::new(path));
    }
    let mut rounds = 500;
    let mut out = None;
    let mut plot = None;
    let mut smoke = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--rounds" => rounds = it.next().context("--rounds N")?.parse()?,
            "--out" => out = Some(it.next().context("--out FILE")?.clone()),
            "--plot" => plot = Some(std::path::PathBuf::from(it.next().context("--plot FILE")?)),
            "--smoke" => smoke = true,
            other => bail!("unknown argument {other:?}; {USAGE}"),
        }
    }
    let dir = tempfile::tempdir()?;
    let mut report = String::new();
    writeln!(report, "# locket benchmark results\n")?;
    writeln!(report, "Machine: {}\n", machine())?;
    writeln!(
        report,
        "Regenerate with `bench/run.sh`. Every figure is measured in this one run, with the \
         contenders interleaved, and shown beside its floor.\n"
    )?;
    uncontended(dir.path(), rounds, &mut report)?;
    handoff(dir.path(), rounds, &mut report, plot.as_deref())?;
    let (sizes, ms): (&[usize], u64) = if smoke {
        (&[2, 4], 200)
    } else {
        (&[2, 4, 8, 16], 2000)
    };
    throughput(dir.path(), sizes, ms, &mut report)?;
    startup(dir.path(), &mut report)?;
    if smoke {
        writeln!(
            report,
            "## Large plugin start-up\n\n(skipped in a smoke run)\n"
        )?;
    } else {
        large_startup(dir.path(), 3, &mut report)?;
    }
    let instances: &[usize] = if smoke { &[1, 4] } else { &[1, 16, 64] };
    memory(dir.path(), instances, &mut report)?;
    timeout_accuracy(&dir.path().join("timeout.lock"), &mut report)?;
    targets(&mut report)?;
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
    let unchecked = locket::lock_file(&path).with_replacement_check(false);
    let mut guest = Guest::start(dir)?;
    let ops = 2_000;
    let mut samples: [Vec<f64>; 5] = Default::default();
    // What the replaced-file check costs on its own: one stat of the path.
    let mut stat_samples = Vec::new();
    // Python is slower per operation: smaller batches, fewer of them.
    let py_kinds: Vec<Kind> = if python().is_some() {
        vec![Kind::PyLocket, Kind::PyLocketTry, Kind::Filelock]
    } else {
        Vec::new()
    };
    let mut py = py_kinds
        .iter()
        .map(|&k| Contender::spawn(k, dir, "uncontended.lock"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut py_samples = vec![Vec::new(); py.len()];
    let py_ops = 200;
    // Interleave: each round runs a batch of every contender.
    for _ in 0..rounds.max(20) {
        let t = Instant::now();
        for _ in 0..ops {
            raw.lock()?;
            raw.unlock()?;
        }
        samples[0].push(t.elapsed().as_nanos() as f64 / ops as f64);
        for (slot, lock) in [(1, &plain), (2, &timed), (4, &unchecked)] {
            let t = Instant::now();
            for _ in 0..ops {
                lock.acquire()?;
                lock.release()?;
            }
            samples[slot].push(t.elapsed().as_nanos() as f64 / ops as f64);
        }
        let t = Instant::now();
        for _ in 0..ops {
            std::hint::black_box(std::fs::metadata(&path)?);
        }
        stat_samples.push(t.elapsed().as_nanos() as f64 / ops as f64);
        samples[3].push(guest.bench(ops)?);
        for (c, s) in py.iter_mut().zip(py_samples.iter_mut()) {
            c.send(&format!("bench {py_ops}"))?;
            s.push(c.number()?);
        }
    }
    guest.finish()?;
    for c in py {
        c.finish()?;
    }
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
        "Python contenders run their loop in Python ({py_ops} operations a batch, timed there).\n"
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
        "`locket`, replaced-file check off",
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
        match *name {
            "`locket`, no timeout" => record("locket/raw", m / floor),
            "`locket`, replaced-file check off" => record("unchecked/raw", m / floor),
            "guest in `locket-host`" => record("guest/locket", m / native),
            _ => {}
        }
    }
    for (kind, s) in py_kinds.iter().zip(py_samples.iter_mut()) {
        let m = median(s);
        writeln!(
            report,
            "| {} | {m:.0} | {:.2}× | {:.2}× |",
            kind.name(),
            m / floor,
            m / native
        )?;
    }
    let stat = median(&mut stat_samples);
    record("checked floor/raw", (floor + stat) / floor);
    writeln!(
        report,
        "\nThe replaced-file check is one `stat` of the lock path after each acquire. \
         Measured alone, in the same rounds, it takes {stat:.0} ns ({:.2}× the whole raw \
         acquire+release), so no lock that checks can cost less than raw + stat = {:.0} ns, \
         {:.2}× the floor.\n",
        stat / floor,
        floor + stat,
        (floor + stat) / floor
    )?;
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
    let time = |args: &[&str]| time_run(args, locket_tests::guests::LOCKER, &[], &cache);
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
        "| cached (precompiled, mapped from the cache) | {warm_ms:.1} | {:.2}× |",
        warm_ms / cold_ms
    )?;
    writeln!(report)?;
    Ok(())
}

/// Milliseconds a whole `locket-host run` of `plugin` takes, with the cache
/// in `cache` and no input or output.
fn time_run(
    host_args: &[&str],
    plugin: &str,
    plugin_args: &[&str],
    cache: &Path,
) -> anyhow::Result<f64> {
    let t = Instant::now();
    let status = locket_tests::host_command(host_args, plugin, plugin_args)
        .env("LOCKET_CACHE_DIR", cache)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "locket-host failed: {status}");
    Ok(t.elapsed().as_secs_f64() * 1000.0)
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

/// Every kind of contender: native, guest and Python.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A raw blocking `flock` (std `File::lock`): the floor.
    Flock,
    /// The `locket` crate, without and with a timeout.
    Locket,
    LocketTimeout,
    /// A guest (`locker.wasm`) under `locket-host run`, without and with a timeout.
    Guest,
    GuestTimeout,
    /// locket.py with timeout None, 5 s and 0.
    PyLocket,
    PyLocketTimeout,
    PyLocketTry,
    /// py-filelock's `FileLock`.
    Filelock,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Flock => "raw blocking `flock` (floor)",
            Kind::Locket => "`locket`, no timeout",
            Kind::LocketTimeout => "`locket`, timeout 60 s",
            Kind::Guest => "guest, no timeout",
            Kind::GuestTimeout => "guest, timeout 60 s",
            Kind::PyLocket => "locket.py, timeout None",
            Kind::PyLocketTimeout => "locket.py, timeout 5 s",
            Kind::PyLocketTry => "locket.py, timeout 0",
            Kind::Filelock => "py-filelock",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Kind::Flock => "flock",
            Kind::Locket => "locket",
            Kind::LocketTimeout => "locket-timeout",
            Kind::Guest => "guest",
            Kind::GuestTimeout => "guest-timeout",
            Kind::PyLocket => "py-locket",
            Kind::PyLocketTimeout => "py-locket-timeout",
            Kind::PyLocketTry => "py-locket-try",
            Kind::Filelock => "filelock",
        }
    }

    fn is_python(self) -> bool {
        matches!(
            self,
            Kind::PyLocket | Kind::PyLocketTimeout | Kind::PyLocketTry | Kind::Filelock
        )
    }

    fn is_guest(self) -> bool {
        matches!(self, Kind::Guest | Kind::GuestTimeout)
    }
}

/// A contender process, driven by lines: see `contender` (native),
/// `locker.wasm` (guests) and `bench/python/contender.py`.
struct Contender {
    kind: Kind,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    latencies: Vec<f64>,
}

/// The Python of the project's virtualenv, if `scripts/prepare-tests.sh` made it.
fn python() -> Option<std::path::PathBuf> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    python.exists().then_some(python)
}

impl Contender {
    /// Starts a contender on the lock file `dir/lock` and waits until it is ready.
    fn spawn(kind: Kind, dir: &Path, lock: &str) -> anyhow::Result<Self> {
        let path = dir.join(lock);
        let mut command = match kind {
            Kind::Flock | Kind::Locket | Kind::LocketTimeout => {
                let mut c = Command::new(std::env::current_exe()?);
                c.args(["contender", kind.short()]).arg(&path);
                c
            }
            Kind::Guest | Kind::GuestTimeout => {
                let grant = format!("--dir={}::/data", dir.display());
                locket_tests::host_command(
                    &[&grant],
                    locket_tests::guests::LOCKER,
                    &[&format!("/data/{lock}")],
                )
            }
            _ => {
                let python = python().context("no .venv: run scripts/prepare-tests.sh")?;
                let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/contender.py");
                let mut c = Command::new(python);
                c.arg(script).arg(kind.short()).arg(&path);
                c
            }
        };
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting a {} contender", kind.short()))?;
        let stdin = child.stdin.take().context("stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("stdout")?);
        let mut contender = Self {
            kind,
            child,
            stdin,
            stdout,
            latencies: Vec::new(),
        };
        contender.expect("ready")?;
        Ok(contender)
    }

    fn send(&mut self, line: &str) -> anyhow::Result<()> {
        writeln!(self.stdin, "{line}")?;
        self.stdin.flush()?;
        Ok(())
    }

    fn line(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("the {} contender exited", self.kind.short());
        }
        Ok(line.trim().to_owned())
    }

    fn expect(&mut self, want: &str) -> anyhow::Result<()> {
        let line = self.line()?;
        anyhow::ensure!(
            line == want,
            "{} said {line:?}, not {want:?}",
            self.kind.short()
        );
        Ok(())
    }

    /// The last word of the next line, as a number.
    fn number(&mut self) -> anyhow::Result<f64> {
        let line = self.line()?;
        line.split_whitespace()
            .last()
            .and_then(|w| w.parse().ok())
            .with_context(|| format!("{} said {line:?}", self.kind.short()))
    }

    /// Starts one hand-off: the contender says it is about to wait.
    fn go(&mut self) -> anyhow::Result<()> {
        let line = match self.kind {
            Kind::Guest => "handoff",
            Kind::GuestTimeout => "handoff 60000",
            _ => "go",
        };
        self.send(line)?;
        self.expect("waiting")
    }

    /// The data file `name` in `dir` as this contender names it.
    fn data(&self, dir: &Path, name: &str) -> String {
        if self.kind.is_guest() {
            format!("/data/{name}")
        } else {
            dir.join(name).display().to_string()
        }
    }

    fn finish(mut self) -> anyhow::Result<()> {
        drop(self.stdin);
        self.child.wait()?;
        Ok(())
    }
}

/// The hand-off waiters, the floor first; Python ones only with the venv.
fn handoff_kinds() -> Vec<Kind> {
    let mut kinds = vec![
        Kind::Flock,
        Kind::Locket,
        Kind::LocketTimeout,
        Kind::Guest,
        Kind::GuestTimeout,
    ];
    if python().is_some() {
        kinds.extend([Kind::PyLocket, Kind::PyLocketTimeout, Kind::Filelock]);
    }
    kinds
}

/// Hand-off latency from a holder's release to a waiter in another process.
fn handoff(
    dir: &Path,
    rounds: usize,
    report: &mut String,
    plot: Option<&Path>,
) -> anyhow::Result<()> {
    let path = dir.join("handoff.lock");
    let holder = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    let mut waiters = handoff_kinds()
        .into_iter()
        .map(|kind| Contender::spawn(kind, dir, "handoff.lock"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Python waiters poll (every 50 ms or more), so they get fewer rounds.
    let python_rounds = rounds.div_ceil(10).max(3);
    for round in 0..rounds {
        for w in &mut waiters {
            if w.kind.is_python() && round >= python_rounds {
                continue;
            }
            holder.lock()?;
            w.go()?;
            // Let the waiter block in the kernel (or start polling) first.
            std::thread::sleep(Duration::from_millis(2));
            let released = now_ns();
            holder.unlock()?;
            let acquired = w.number()? as u128;
            w.latencies
                .push(acquired.saturating_sub(released) as f64 / 1000.0);
        }
    }
    let mut results = Vec::new();
    for w in waiters {
        results.push((w.kind, w.latencies.clone()));
        w.finish()?;
    }
    let floor = median(&mut results[0].1.clone());
    let py_timeout = results
        .iter()
        .find(|(k, _)| *k == Kind::PyLocketTimeout)
        .map(|(_, l)| median(&mut l.clone()));
    writeln!(report, "## Cross-process hand-off latency\n")?;
    writeln!(
        report,
        "From the holder's release to the waiter's acquire, by the wall clock (guests read the \
         host's wall clock through WASI), {rounds} hand-offs per waiter ({python_rounds} for the \
         Python ones, which poll), interleaved.\n"
    )?;
    writeln!(
        report,
        "| waiter | median µs | p99 µs | max µs | median vs floor | locket.py (timeout 5 s) vs it |\n\
         |---|---:|---:|---:|---:|---:|"
    )?;
    for (kind, latencies) in &results {
        let mut s = latencies.clone();
        let m = median(&mut s);
        let versus = py_timeout.map_or_else(|| "—".to_owned(), |p| format!("{:.0}×", p / m));
        let p99 = percentile(&mut s, 0.99);
        if !kind.is_python() {
            record_max("p99 ours", p99);
            if let Some(p) = py_timeout {
                record_min("py timeout/ours", p / m);
            }
        }
        if *kind == Kind::GuestTimeout {
            record("guest timeout/raw", m / floor);
        }
        writeln!(
            report,
            "| {} | {m:.0} | {:.0} | {:.0} | {:.2}× | {versus} |",
            kind.name(),
            percentile(&mut s, 0.99),
            percentile(&mut s, 1.0),
            m / floor
        )?;
    }
    writeln!(report)?;
    if let Some(plot) = plot {
        std::fs::write(plot, cdf_svg(&results))
            .with_context(|| format!("writing {}", plot.display()))?;
        let name = plot.file_name().unwrap_or_default().to_string_lossy();
        writeln!(report, "![Hand-off latency CDF]({name})\n")?;
    }
    Ok(())
}

/// Throughput and fairness: N contenders increment one counter file under the
/// lock for a while; raw `flock` contenders against ours (guests and the
/// `locket` crate, half each), and everyone mixed with Python.
fn throughput(dir: &Path, sizes: &[usize], ms: u64, report: &mut String) -> anyhow::Result<()> {
    writeln!(report, "## Throughput and fairness\n")?;
    writeln!(
        report,
        "N processes increment one counter file under the lock for {ms} ms each run: read, \
         add one, write, release. Ops/s is the total over the run; fairness is the busiest \
         contender's count over the least served one's; lost updates compare the file with the \
         total, and must be 0. Runs are interleaved by N.\n"
    )?;
    writeln!(
        report,
        "| N | contenders | ops/s | vs raw `flock` | busiest / least served | lost updates |\n\
         |---:|---|---:|---:|---:|---:|"
    )?;
    let mixes: Vec<(&str, Vec<Kind>)> = {
        let mut mixes = vec![
            ("raw `flock` (floor)", vec![Kind::Flock]),
            ("guests + `locket`", vec![Kind::Guest, Kind::Locket]),
        ];
        if python().is_some() {
            mixes.push((
                "guests, `locket`, `flock`, locket.py",
                vec![Kind::Guest, Kind::Locket, Kind::Flock, Kind::PyLocket],
            ));
        }
        mixes
    };
    for &n in sizes {
        let mut floor = None;
        for (label, kinds) in &mixes {
            let data = format!("counter-{n}-{}", kinds.len());
            std::fs::write(dir.join(&data), "0")?;
            let mut contenders = (0..n)
                .map(|i| Contender::spawn(kinds[i % kinds.len()], dir, "contend.lock"))
                .collect::<anyhow::Result<Vec<_>>>()?;
            for c in &mut contenders {
                let line = format!("contend {} {ms}", c.data(dir, &data));
                c.send(&line)?;
            }
            let mut counts = Vec::new();
            for c in &mut contenders {
                counts.push(c.number()?);
            }
            for c in contenders {
                c.finish()?;
            }
            let total: f64 = counts.iter().sum();
            let stored: f64 = std::fs::read_to_string(dir.join(&data))?.trim().parse()?;
            let ops = total / (ms as f64 / 1000.0);
            let floor = *floor.get_or_insert(ops);
            let most = counts.iter().copied().fold(0.0, f64::max);
            let least = counts.iter().copied().fold(f64::INFINITY, f64::min);
            let fairness = if least > 0.0 {
                format!("{:.1}", most / least)
            } else {
                "∞ (one got none)".to_owned()
            };
            writeln!(
                report,
                "| {n} | {label} | {ops:.0} | {:.2}× | {fairness} | {} |",
                ops / floor,
                total - stored
            )?;
            if n == 8 && kinds == &[Kind::Guest, Kind::Locket] {
                record("throughput 8", ops / floor);
            }
            record_max("lost", total - stored);
        }
    }
    writeln!(report)?;
    Ok(())
}

/// The host's memory with N guest instances waiting for a lock: the async
/// `serve` example (N instances in one process), and `locket-host run` (one
/// per process).
fn memory(dir: &Path, sizes: &[usize], report: &mut String) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let serve = exe.parent().context("target dir")?.join("examples/serve");
    writeln!(report, "## Memory\n")?;
    let lock = dir.join("memory.lock");
    let holder = locket::lock_file(&lock);
    holder.acquire()?;
    let grant = format!("--dir={}::/data", dir.display());
    let counter_args = ["/data/memory.lock", "/data/memory", "1"];
    // One instance per process.
    let mut single =
        locket_tests::host_command(&[&grant], locket_tests::guests::COUNTER, &counter_args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
    wait_for_waiters(&lock, 1)?;
    let single_rss = rss_kib(single.id())?;
    holder.release()?;
    single.wait()?;
    writeln!(
        report,
        "Resident memory (VmRSS) once every instance waits in `acquire` for a lock held elsewhere.\n"
    )?;
    writeln!(
        report,
        "| host | instances | RSS MiB | per instance MiB |\n|---|---:|---:|---:|"
    )?;
    writeln!(
        report,
        "| `locket-host run` | 1 | {:.1} | {:.1} |",
        single_rss / 1024.0,
        single_rss / 1024.0
    )?;
    if !serve.exists() {
        writeln!(
            report,
            "\n(`{}` is not built; the async rows are skipped.)\n",
            serve.display()
        )?;
        return Ok(());
    }
    let mut base = None;
    for &n in sizes {
        holder.acquire()?;
        let mut child = Command::new(&serve)
            .args([
                "--instances",
                &n.to_string(),
                "--workers",
                "2",
                "--dir",
                &format!("{}::/data", dir.display()),
            ])
            .args(std::iter::once(locket_tests::guests::COUNTER).chain(counter_args))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        wait_for_waiters(&lock, n)?;
        let rss = rss_kib(child.id())?;
        holder.release()?;
        anyhow::ensure!(child.wait()?.success(), "serve failed");
        let (n1, rss1) = *base.get_or_insert((n, rss));
        let per = if n > n1 {
            format!("{:.2}", (rss - rss1) / 1024.0 / (n - n1) as f64)
        } else {
            "—".to_owned()
        };
        writeln!(
            report,
            "| async `serve` example, 2 workers | {n} | {:.1} | {per} |",
            rss / 1024.0
        )?;
    }
    writeln!(
        report,
        "\nThe per-instance figure for `serve` is the growth over its first row, per added instance.\n"
    )?;
    Ok(())
}

/// Waits until the kernel shows `n` processes or threads blocked on `path`.
fn wait_for_waiters(path: &Path, n: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let waiting = locket_tests::lock_waiters(path)?;
        if waiting >= n {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "only {waiting} of {n} waiters on {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn rss_kib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")
}

/// Start-up of a large plugin (the componentize-py locker, about 18 MB):
/// cold, from the cache, and precompiled.
fn large_startup(dir: &Path, tries: usize, report: &mut String) -> anyhow::Result<()> {
    writeln!(report, "## Large plugin start-up\n")?;
    let Some(plugin) = python_plugin(dir)? else {
        writeln!(
            report,
            "(componentize-py is not installed: run scripts/prepare-tests.sh.)\n"
        )?;
        return Ok(());
    };
    let size = std::fs::metadata(&plugin)?.len();
    let grant = format!("--dir={}::/data", dir.display());
    let cache = dir.join("large-cache");
    let artifact = dir.join("locker-py.cwasm");
    let status = Command::new(locket_tests::host_exe())
        .arg("compile")
        .arg(&plugin)
        .arg("-o")
        .arg(&artifact)
        .status()?;
    anyhow::ensure!(status.success(), "locket-host compile failed");
    let plugin = plugin.display().to_string();
    let artifact = artifact.display().to_string();
    let time = |args: &[&str], file: &str| time_run(args, file, &["/data/x.lock"], &cache);
    time(&[&grant], &plugin)?; // fills the cache
    let (mut cold, mut cached, mut precompiled) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..tries.max(1) * 4 {
        if i < tries.max(1) {
            cold.push(time(&[&grant, "--no-cache"], &plugin)?);
        }
        cached.push(time(&[&grant], &plugin)?);
        precompiled.push(time(&[&grant, "--allow-precompiled"], &artifact)?);
    }
    let cold_ms = median(&mut cold);
    writeln!(
        report,
        "`locket-host run` of the componentize-py `locker-py.wasm` ({:.1} MB) that exits at once, \
         whole process: median of {} cold runs and {} of the others, interleaved.\n",
        size as f64 / 1e6,
        cold.len(),
        cached.len()
    )?;
    writeln!(report, "| start | ms | ratio to cold |\n|---|---:|---:|")?;
    writeln!(
        report,
        "| cold (`--no-cache`, compiled) | {cold_ms:.0} | 1.00× |"
    )?;
    for (label, s) in [
        ("cached (mapped from the cache)", &mut cached),
        ("precompiled (`--allow-precompiled`)", &mut precompiled),
    ] {
        let m = median(s);
        writeln!(report, "| {label} | {m:.1} | {:.3}× |", m / cold_ms)?;
        if label.starts_with("cached") {
            record("large cached/cold", m / cold_ms);
            record("large cached ms", m);
        } else {
            record("large precompiled ms", m);
        }
    }
    writeln!(report)?;
    Ok(())
}

/// The componentize-py locker plugin, built into `dir` if the venv has
/// componentize-py; `None` otherwise.
fn python_plugin(dir: &Path) -> anyhow::Result<Option<std::path::PathBuf>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let componentize = root.join(".venv/bin/componentize-py");
    if !componentize.exists() {
        return Ok(None);
    }
    let out = dir.join("locker-py.wasm");
    let status = Command::new(componentize)
        .current_dir(&root)
        .args([
            "-d",
            "wit",
            "-w",
            "locket:lock/plugin",
            "componentize",
            "-p",
            "guest/python",
            "locker",
            "-o",
        ])
        .arg(&out)
        .stdout(Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "componentize-py failed");
    Ok(Some(out))
}

/// One native contender process (`locket-bench contender KIND PATH`): the
/// line protocol of `bench/python/contender.py`, for `flock`, `locket` and
/// `locket-timeout`.
fn contender(kind: &str, path: &Path) -> anyhow::Result<()> {
    let raw = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let lock = locket::lock_file(path);
    let timeout = (kind == "locket-timeout").then_some(Duration::from_secs(60));
    let acquire = || -> anyhow::Result<()> {
        match kind {
            "flock" => raw.lock()?,
            "locket" | "locket-timeout" => lock.acquire_with(locket::Mode::Exclusive, timeout)?,
            other => bail!("unknown contender kind {other}"),
        }
        Ok(())
    };
    let release = || -> anyhow::Result<()> {
        match kind {
            "flock" => raw.unlock()?,
            _ => lock.release()?,
        }
        Ok(())
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["go"] => {
                writeln!(out, "waiting")?;
                out.flush()?;
                acquire()?;
                let at = now_ns();
                release()?;
                writeln!(out, "{at}")?;
            }
            ["contend", data, ms] => {
                let until = Instant::now() + Duration::from_millis(ms.parse()?);
                let mut rounds = 0u64;
                while Instant::now() < until {
                    acquire()?;
                    let value: u64 = std::fs::read_to_string(data)?.trim().parse()?;
                    std::fs::write(data, (value + 1).to_string())?;
                    release()?;
                    rounds += 1;
                }
                writeln!(out, "contended {rounds}")?;
            }
            _ => return Ok(()),
        }
        out.flush()?;
    }
    Ok(())
}

/// An SVG plot of the hand-off latency CDF per waiter kind, latency on a log
/// axis.
fn cdf_svg(results: &[(Kind, Vec<f64>)]) -> String {
    const W: f64 = 760.0;
    const H: f64 = 420.0;
    const LEFT: f64 = 60.0;
    const RIGHT: f64 = 250.0;
    const TOP: f64 = 20.0;
    const BOTTOM: f64 = 50.0;
    const COLOURS: [&str; 9] = [
        "#000000", "#1f77b4", "#17becf", "#d62728", "#ff7f0e", "#2ca02c", "#98df8a", "#9467bd",
        "#8c564b",
    ];
    let all: Vec<f64> = results
        .iter()
        .flat_map(|(_, l)| l.iter().copied())
        .collect();
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min).max(1.0);
    let hi = all.iter().copied().fold(0.0, f64::max).max(lo * 10.0);
    let (lo_e, hi_e) = (lo.log10().floor(), hi.log10().ceil());
    let x = |v: f64| LEFT + (v.max(1.0).log10() - lo_e) / (hi_e - lo_e) * (W - LEFT - RIGHT);
    let y = |p: f64| TOP + (1.0 - p) * (H - TOP - BOTTOM);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    for e in lo_e as i32..=hi_e as i32 {
        let gx = x(10f64.powi(e));
        let label = match e {
            ..=2 => format!("{} µs", 10f64.powi(e)),
            3..=5 => format!("{} ms", 10f64.powi(e - 3)),
            _ => format!("{} s", 10f64.powi(e - 6)),
        };
        let _ = writeln!(
            svg,
            "<line x1=\"{gx:.1}\" y1=\"{TOP}\" x2=\"{gx:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{gx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
            H - BOTTOM,
            H - BOTTOM + 16.0
        );
    }
    for p in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let gy = y(p);
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{gy:.1}\" x2=\"{:.1}\" y2=\"{gy:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{p}</text>",
            W - RIGHT,
            LEFT - 6.0,
            gy + 4.0
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">hand-off latency (log scale)</text>\
         <text x=\"14\" y=\"{:.1}\" transform=\"rotate(-90 14 {:.1})\" text-anchor=\"middle\">\
         fraction of hand-offs</text>",
        (LEFT + W - RIGHT) / 2.0,
        H - 12.0,
        (TOP + H - BOTTOM) / 2.0,
        (TOP + H - BOTTOM) / 2.0
    );
    for (i, (kind, latencies)) in results.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let mut sorted = latencies.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len() as f64;
        // A step function: up by 1/n at each sample.
        let mut points = Vec::new();
        for (j, v) in sorted.iter().enumerate() {
            points.push(format!("{:.1},{:.1}", x(*v), y(j as f64 / n)));
            points.push(format!("{:.1},{:.1}", x(*v), y((j + 1) as f64 / n)));
        }
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/>",
            points.join(" ")
        );
        let ly = TOP + 10.0 + i as f64 * 18.0;
        let name = kind.name().replace('`', "");
        let _ = writeln!(
            svg,
            "<line x1=\"{:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{colour}\" \
             stroke-width=\"3\"/><text x=\"{:.1}\" y=\"{:.1}\">{name}</text>",
            W - RIGHT + 10.0,
            W - RIGHT + 30.0,
            W - RIGHT + 36.0,
            ly + 4.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// Figures the targets table needs, recorded by the sections as they go.
static FIGURES: std::sync::Mutex<std::collections::BTreeMap<&'static str, f64>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

fn record(name: &'static str, value: f64) {
    FIGURES.lock().unwrap().insert(name, value);
}

fn record_max(name: &'static str, value: f64) {
    let mut figures = FIGURES.lock().unwrap();
    let slot = figures.entry(name).or_insert(value);
    *slot = slot.max(value);
}

fn record_min(name: &'static str, value: f64) {
    let mut figures = FIGURES.lock().unwrap();
    let slot = figures.entry(name).or_insert(value);
    *slot = slot.min(value);
}

/// The performance targets of issue 5, against this run's figures.
fn targets(report: &mut String) -> anyhow::Result<()> {
    let figures = FIGURES.lock().unwrap().clone();
    writeln!(report, "## Targets\n")?;
    writeln!(
        report,
        "| measure | target | this run | met |\n|---|---|---:|:---:|"
    )?;
    let rows: [(&str, &str, &str, bool, &str); 10] = [
        (
            "guest uncontended acquire+release vs `locket`",
            "≤ 3×",
            "guest/locket",
            true,
            "×",
        ),
        (
            "`locket` uncontended vs raw `flock` (replaced-file check on, the default)",
            "≤ 1.5×",
            "locket/raw",
            true,
            "×",
        ),
        (
            "`locket` uncontended vs raw `flock`, check off",
            "≤ 1.5×",
            "unchecked/raw",
            true,
            "×",
        ),
        (
            "hand-off median, guest with a timeout vs raw blocking `flock`",
            "≤ 2×",
            "guest timeout/raw",
            true,
            "×",
        ),
        (
            "hand-off p99, worst of our waiters",
            "≤ 2000 µs",
            "p99 ours",
            true,
            " µs",
        ),
        (
            "hand-off median, locket.py (timeout 5 s) vs our slowest",
            "≥ 20×",
            "py timeout/ours",
            false,
            "×",
        ),
        (
            "throughput, 8 of our kinds vs 8 raw `flock`",
            "≥ 0.7×",
            "throughput 8",
            false,
            "×",
        ),
        (
            "large plugin start-up, cached vs cold",
            "≤ 0.1×",
            "large cached/cold",
            true,
            "×",
        ),
        (
            "large plugin warm start (cache), whole process",
            "≤ 20 ms",
            "large cached ms",
            true,
            " ms",
        ),
        (
            "large plugin start (precompiled), whole process",
            "≤ 20 ms",
            "large precompiled ms",
            true,
            " ms",
        ),
    ];
    let limit = |target: &str| -> f64 {
        target
            .trim_start_matches(['≤', '≥', ' '])
            .split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(f64::NAN)
    };
    for (measure, target, key, at_most, unit) in rows {
        let Some(&value) = figures.get(key) else {
            writeln!(report, "| {measure} | {target} | not measured | — |")?;
            continue;
        };
        let met = if at_most {
            value <= limit(target)
        } else {
            value >= limit(target)
        };
        let shown = if unit == "×" {
            format!("{value:.2}×")
        } else {
            format!("{value:.1}{unit}")
        };
        writeln!(
            report,
            "| {measure} | {target} | {shown} | {} |",
            if met { "yes" } else { "no" }
        )?;
    }
    let lost = figures.get("lost").copied().unwrap_or(0.0);
    writeln!(
        report,
        "| lost updates, all throughput runs | 0 | {lost:.0} | {} |",
        if lost == 0.0 { "yes" } else { "no" }
    )?;
    writeln!(report)?;
    let checked_target = rows
        .iter()
        .find(|row| row.2 == "locket/raw")
        .map(|row| limit(row.1));
    if let (Some(&checked), Some(&locket), Some(target)) = (
        figures.get("checked floor/raw"),
        figures.get("locket/raw"),
        checked_target,
    ) {
        let verdict = if checked > target {
            format!("above the {target}× target, so no lock that checks can meet it")
        } else {
            format!("within the {target}× target")
        };
        writeln!(
            report,
            "With the replaced-file check on, raw `flock` plus the check's one `stat` is \
             {checked:.2}× raw `flock`, {verdict}; `locket` with the check is {:.2}× raw + stat.\n",
            locket / checked
        )?;
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
