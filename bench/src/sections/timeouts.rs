//! Timeout accuracy: how late a timed-out acquire returns.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::stats::{median, percentile};

/// How late a timed-out acquire returns, against a lock held elsewhere.
pub fn run(path: &Path, report: &mut String) -> anyhow::Result<()> {
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
