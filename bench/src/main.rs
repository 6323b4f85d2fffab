//! locket's benchmark harness.
//!
//! `locket-bench [--rounds N] [--out FILE] [--plot FILE.svg] [--smoke]`
//! measures, in one run on one machine, with the contenders interleaved so
//! that drift cancels:
//!
//! - uncontended acquire+release per operation: a raw std `File::lock`/`unlock`
//!   loop (the floor), the `locket` library, a guest plugin's loop inside
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
//! - how late a timed-out acquire returns;
//! - guest languages: the Python and JavaScript guests against the Rust
//!   guest and native locket.py, uncontended; their start-up and size;
//! - locks in a 3-member etcd cluster: a guest through `locket-host --locks`
//!   and the `locket-etcd` API against raw `etcd-client` calls, uncontended,
//!   hand-off, and 8 contenders on 3 members.
//!
//! It prints a Markdown report and, with `--out`, writes it to FILE.
//! `--smoke` is a short run for the test suite.
//!
//! The contender processes are the peers of the shared test fixtures
//! (`locket-tests`, protocol in `tests/peers/README.md`): `locket-peer`
//! (built with `cargo build -p locket-tests --bins`), `locker.wasm` under
//! `locket-host`, and the Python peer from the project's `.venv`.

mod contenders;
mod plot;
mod report;
mod sections;
mod stats;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::report::{Figures, machine, targets};
use crate::sections::{
    etcd, handoff, languages, memory, startup, throughput, timeouts, uncontended,
};

const USAGE: &str = "usage: locket-bench [--rounds N] [--out FILE] [--plot FILE.svg] [--smoke]";

/// The command line.
struct Options {
    /// Hand-offs per waiter, and (at least 20) uncontended batches.
    rounds: usize,
    /// Where to write the report, besides printing it.
    out: Option<PathBuf>,
    /// Where to write the hand-off CDF plot.
    plot: Option<PathBuf>,
    /// A short run, for the test suite.
    smoke: bool,
}

impl Options {
    /// Parses the arguments after the program's name.
    fn parse(args: impl IntoIterator<Item = String>) -> anyhow::Result<Self> {
        let mut options = Self {
            rounds: 500,
            out: None,
            plot: None,
            smoke: false,
        };
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--rounds" => options.rounds = it.next().context("--rounds N")?.parse()?,
                "--out" => options.out = Some(it.next().context("--out FILE")?.into()),
                "--plot" => options.plot = Some(it.next().context("--plot FILE")?.into()),
                "--smoke" => options.smoke = true,
                other => bail!("unknown argument {other:?}; {USAGE}"),
            }
        }
        Ok(options)
    }
}

/// The first-build figures, which take fresh clones and most of an hour, so
/// `bench/build-times.sh` measures them apart and writes them to
/// `bench/BUILD-TIMES.md`; the report carries that file as it is.
fn first_build(report: &mut String) -> anyhow::Result<()> {
    writeln!(report, "## First build\n")?;
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("BUILD-TIMES.md");
    match std::fs::read_to_string(&file) {
        Ok(text) => {
            let body = text
                .split_once("\n\n")
                .map_or(text.as_str(), |(_, rest)| rest);
            writeln!(
                report,
                "Measured apart, by `bench/build-times.sh` (bench/BUILD-TIMES.md):\n\n{}",
                body.trim_end()
            )?;
        }
        Err(_) => writeln!(report, "(not measured: run bench/build-times.sh)")?,
    }
    writeln!(report)?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let options = Options::parse(std::env::args().skip(1))?;
    let smoke = options.smoke;
    let scratch = tempfile::tempdir()?;
    let dir = scratch.path();
    let mut report = String::new();
    let mut figures = Figures::default();
    writeln!(report, "# locket benchmark results\n")?;
    writeln!(report, "Machine: {}\n", machine())?;
    writeln!(
        report,
        "Regenerate with `bench/run.sh`. Every figure is measured in this one run, with the \
         contenders interleaved, and shown beside its floor.\n"
    )?;
    // The guests must run Cranelift's code, as every run after a plugin's
    // first does: fill the cache before anything is measured.
    contenders::fill_the_cache(dir)?;
    uncontended::run(dir, options.rounds, &mut report, &mut figures)?;
    handoff::run(
        dir,
        options.rounds,
        options.plot.as_deref(),
        &mut report,
        &mut figures,
    )?;
    let (sizes, ms): (&[usize], u64) = if smoke {
        (&[2, 4], 200)
    } else {
        (&[2, 4, 8, 16], 2000)
    };
    throughput::run(dir, sizes, ms, &mut report, &mut figures)?;
    startup::small(dir, &mut report)?;
    if smoke {
        writeln!(
            report,
            "## Large plugin start-up\n\n(skipped in a smoke run)\n"
        )?;
    } else {
        startup::large(dir, 3, &mut report, &mut figures)?;
    }
    let instances: &[usize] = if smoke { &[1, 4] } else { &[1, 16, 64] };
    memory::run(dir, instances, &mut report)?;
    timeouts::run(&dir.join("timeout.lock"), &mut report)?;
    if locket_tests::etcd::etcd_exe().is_ok() {
        let sizes = if smoke {
            etcd::Sizes {
                batches: 2,
                cycles: 5,
                handoffs: 3,
                contend_ms: 300,
            }
        } else {
            etcd::Sizes {
                batches: 7,
                cycles: 50,
                handoffs: 30,
                contend_ms: 3000,
            }
        };
        etcd::run(dir, &sizes, &mut report, &mut figures)?;
    } else {
        writeln!(
            report,
            "## Locks in etcd\n\n(skipped: etcd is not installed; scripts/prepare-tests.sh installs it)\n"
        )?;
    }
    let (batches, cycles, starts) = if smoke { (2, 50, 1) } else { (7, 2000, 5) };
    languages::run(dir, batches, cycles, starts, &mut report)?;
    first_build(&mut report)?;
    targets(&mut report, &figures)?;
    print!("{report}");
    if let Some(out) = &options.out {
        std::fs::write(out, &report).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}
