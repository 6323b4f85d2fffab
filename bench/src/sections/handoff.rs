//! Cross-process hand-off latency: from a holder's release to a waiter's
//! acquire in another process.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;

use crate::contenders::{self, Contender, Kind};
use crate::plot::cdf_svg;
use crate::report::Figures;
use crate::stats::{median, percentile};

/// The hand-off waiters, the floor first; Python ones only with the venv.
fn kinds() -> Vec<Kind> {
    let mut kinds = vec![
        Kind::Flock,
        Kind::Locket,
        Kind::LocketTimeout,
        Kind::Guest,
        Kind::GuestTimeout,
    ];
    if contenders::python_available() {
        kinds.extend([Kind::PyLocket, Kind::PyLocketTimeout, Kind::Filelock]);
    }
    kinds
}

/// Hand-off latency from a holder's release to a waiter in another process,
/// `rounds` hand-offs per waiter, interleaved; with `plot`, their CDF is
/// written there as an SVG.
pub fn run(
    dir: &Path,
    rounds: usize,
    plot: Option<&Path>,
    report: &mut String,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    let path = contenders::aged_lock_file(dir, "handoff.lock")?;
    let holder = locket_tests::raw_lock_file(&path)?;
    let mut waiters = kinds()
        .into_iter()
        .map(|kind| Contender::start(kind, dir, "handoff.lock"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Python waiters poll (every 50 ms or more), so they get fewer rounds.
    let python_rounds = rounds.div_ceil(10).max(3);
    for round in 0..rounds {
        for w in &mut waiters {
            if w.kind.is_python() && round >= python_rounds {
                continue;
            }
            holder.lock()?;
            w.start_handoff()?;
            // Let the waiter block in the kernel (or start polling) first.
            std::thread::sleep(Duration::from_millis(2));
            let released = now_ns();
            holder.unlock()?;
            let acquired = w.acquired_at()?;
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
            figures.record_max("p99 ours", p99);
            if let Some(p) = py_timeout {
                figures.record_min("py timeout/ours", p / m);
            }
        }
        if *kind == Kind::GuestTimeout {
            figures.record("guest timeout/raw", m / floor);
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

/// The wall clock in ns since the Unix epoch, as the waiters report it.
fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}
