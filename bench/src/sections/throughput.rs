//! Throughput and fairness of contending processes, with lost updates
//! counted.

use std::fmt::Write as _;
use std::path::Path;

use crate::contenders::{self, Contender, Kind};
use crate::report::Figures;

/// Throughput and fairness: N contenders (for each N of `sizes`) increment
/// one counter file under the lock for `ms` milliseconds; raw `flock`
/// contenders against ours (guests and the `locket` library, half each), and
/// everyone mixed with Python.
pub fn run(
    dir: &Path,
    sizes: &[usize],
    ms: u64,
    report: &mut String,
    figures: &mut Figures,
) -> anyhow::Result<()> {
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
        if contenders::python_available() {
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
                .map(|i| Contender::start(kinds[i % kinds.len()], dir, "contend.lock"))
                .collect::<anyhow::Result<Vec<_>>>()?;
            for c in &mut contenders {
                c.start_contending(dir, &data, ms)?;
            }
            let mut counts = Vec::new();
            for c in &mut contenders {
                counts.push(c.contended()?);
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
                figures.record("throughput 8", ops / floor);
            }
            figures.record_max("lost", total - stored);
        }
    }
    writeln!(report)?;
    Ok(())
}
