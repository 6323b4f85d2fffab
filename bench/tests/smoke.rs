//! A smoke run of the benchmark harness, with few iterations, so that the
//! harness cannot rot between real runs. It checks the report's shape and the
//! correctness figures in it, never a speed.

use std::process::Command;

#[test]
fn a_smoke_run_reports_every_section_and_loses_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("RESULTS.md");
    let plot = dir.path().join("handoff-cdf.svg");
    let status = Command::new(env!("CARGO_BIN_EXE_locket-bench"))
        .args(["--smoke", "--rounds", "5", "--out"])
        .arg(&out)
        .arg("--plot")
        .arg(&plot)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "locket-bench --smoke failed: {status}");
    let report = std::fs::read_to_string(&out).unwrap();
    for section in [
        "## Uncontended acquire+release",
        "## Cross-process hand-off latency",
        "## Throughput and fairness",
        "## Plugin start-up",
        "## Large plugin start-up",
        "## Memory",
        "## Timeout accuracy",
        "## Locks in etcd",
        "## Guest languages",
        "| JavaScript guest |",
        "| Python guest |",
        "### Throughput, 8 contenders on 3 members",
        "## Targets",
    ] {
        assert!(
            report.contains(section),
            "{section} missing from:\n{report}"
        );
    }
    for row in [
        "guest in `locket-host`",
        "guest, timeout 60 s",
        "locket.py, timeout 5 s",
        "py-filelock",
        "no lock that checks can cost less than raw + fstat",
    ] {
        assert!(report.contains(row), "no {row:?} row in:\n{report}");
    }
    // Every throughput row ends with its lost updates, which must be 0.
    let rows = table_rows(&report, "## Throughput and fairness", "| N ");
    assert!(rows.len() >= 4, "too few throughput rows:\n{rows:#?}");
    no_lost_updates(&rows);
    // The same for the etcd throughput rows.
    let rows = table_rows(&report, "### Throughput, 8 contenders", "| contenders ");
    assert_eq!(rows.len(), 2, "etcd throughput rows:\n{rows:#?}");
    no_lost_updates(&rows);
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg"), "not an SVG");
    assert_eq!(
        svg.matches("<polyline").count(),
        8,
        "one curve per waiter kind"
    );
}

/// The rows of the table under `heading` (up to the next `## ` section),
/// less its header row, which starts with `header`.
fn table_rows<'a>(report: &'a str, heading: &str, header: &str) -> Vec<&'a str> {
    let section = report.split(heading).nth(1).unwrap();
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with(header))
        .collect()
}

/// Checks that each throughput row's last cell, its lost updates, is 0.
fn no_lost_updates(rows: &[&str]) {
    for row in rows {
        let lost = row.trim_end_matches('|').rsplit('|').next().unwrap().trim();
        assert_eq!(lost, "0", "lost updates in {row}");
    }
}
