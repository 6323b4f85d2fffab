//! What the report is made of beyond the sections' own tables: the figures
//! the sections record for the targets table, that table, and the machine
//! the run is on.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Figures the targets table needs, recorded by the sections as they go,
/// by name.
#[derive(Debug, Default)]
pub struct Figures(BTreeMap<&'static str, f64>);

impl Figures {
    /// Records `value` as the figure `name`, replacing any earlier one.
    pub fn record(&mut self, name: &'static str, value: f64) {
        self.0.insert(name, value);
    }

    /// Records `value` as the figure `name` if it is the largest so far.
    pub fn record_max(&mut self, name: &'static str, value: f64) {
        let slot = self.0.entry(name).or_insert(value);
        *slot = slot.max(value);
    }

    /// Records `value` as the figure `name` if it is the smallest so far.
    pub fn record_min(&mut self, name: &'static str, value: f64) {
        let slot = self.0.entry(name).or_insert(value);
        *slot = slot.min(value);
    }

    /// The figure `name`, if a section recorded it.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.get(name).copied()
    }
}

/// The machine this run is on: CPU model, cores and kernel.
pub fn machine() -> String {
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

/// The performance targets (issues 5, 11 and 13), against this run's figures.
pub fn targets(report: &mut String, figures: &Figures) -> anyhow::Result<()> {
    writeln!(report, "## Targets\n")?;
    writeln!(
        report,
        "| measure | target | this run | met |\n|---|---|---:|:---:|"
    )?;
    let rows: [(&str, &str, &str, bool, &str); 15] = [
        (
            "guest uncontended acquire+release vs `locket`",
            "≤ 1.3×",
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
            "large plugin first run, `--compiler auto` vs Cranelift only, whole process",
            "≤ 0.2×",
            "large first auto/cranelift",
            true,
            "×",
        ),
        (
            "large plugin runs after an auto first run vs after a Cranelift one",
            "≤ 1.1×",
            "large after auto/cached",
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
        (
            "etcd: guest uncontended acquire+release vs raw `etcd-client` Lock + Unlock",
            "≤ 1.3×",
            "etcd guest/raw",
            true,
            "×",
        ),
        (
            "etcd: hand-off median, guest waiter vs a raw watch waiter",
            "≤ 1.5×",
            "etcd handoff guest/watch",
            true,
            "×",
        ),
        (
            "etcd: throughput, 8 guests on 3 members vs 8 raw `etcd-client` loops",
            "≥ 0.7×",
            "etcd throughput 8",
            false,
            "×",
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
        let Some(value) = figures.get(key) else {
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
    for (measure, key) in [
        ("lost updates, all throughput runs", "lost"),
        ("lost updates, etcd throughput runs", "etcd lost"),
    ] {
        let Some(lost) = figures.get(key) else {
            writeln!(report, "| {measure} | 0 | not measured | — |")?;
            continue;
        };
        writeln!(
            report,
            "| {measure} | 0 | {lost:.0} | {} |",
            if lost == 0.0 { "yes" } else { "no" }
        )?;
    }
    writeln!(report)?;
    let checked_target = rows
        .iter()
        .find(|row| row.2 == "locket/raw")
        .map(|row| limit(row.1));
    if let (Some(checked), Some(locket), Some(target)) = (
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
            "With the replaced-file check on, raw `flock` plus the check's one `fstat` is \
             {checked:.2}× raw `flock`, {verdict}; `locket` with the check is {:.2}× raw + fstat.\n",
            locket / checked
        )?;
    }
    writeln!(
        report,
        "The guest's remaining cost over `locket` is wasmtime's component-model call path (two host calls per acquire+release: lifting, lowering, borrow-scope checks), not the host's code. A first run on Winch still has Cranelift compile one trampoline per function callable from outside, thousands in a Python plugin: about a third of that run by perf. See bench/HANDOFF-TRACE.md for where a guest's hand-off goes.\n"
    )?;
    Ok(())
}
