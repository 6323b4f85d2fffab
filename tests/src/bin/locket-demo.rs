//! The native demo: several processes increment one counter under one lock.
//!
//! `locket-demo [WORKERS] [INCREMENTS]` starts WORKERS `locket` processes
//! (default 4) and one util-linux `flock(1)` process, each of which reads a
//! number from a data file, adds one and writes it back, INCREMENTS times
//! (default 500), holding the lock file for each step. Without the lock,
//! increments would be lost; with it, the total is exact. The data lives in its
//! own file, beside the lock file, which nobody writes.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Instant;

use anyhow::{Context, bail, ensure};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [mode, lock, data, n] = args.as_slice()
        && mode == "--worker"
    {
        return worker(Path::new(lock), Path::new(data), n.parse()?);
    }
    let workers: u64 = args
        .first()
        .map_or(Ok(4), |s| s.parse())
        .context("WORKERS")?;
    let increments: u64 = args
        .get(1)
        .map_or(Ok(500), |s| s.parse())
        .context("INCREMENTS")?;
    let dir = tempfile::tempdir()?;
    let lock = dir.path().join("counter.lock");
    let data = dir.path().join("counter");
    std::fs::write(&data, "0\n")?;

    println!(
        "{workers} locket processes and 1 flock(1) process each add 1 to a shared counter {increments} times"
    );
    let started = Instant::now();
    let me = std::env::current_exe()?;
    let mut children: Vec<(String, Child)> = (0..workers)
        .map(|i| {
            let child = Command::new(&me)
                .arg("--worker")
                .args([&lock, &data])
                .arg(increments.to_string())
                .spawn()?;
            Ok((format!("locket worker {i}"), child))
        })
        .collect::<anyhow::Result<_>>()?;
    // util-linux flock(1) takes the same lock around a shell increment.
    let script = format!(
        "i=0; while [ $i -lt {increments} ]; do \
           flock \"$0\" sh -c 'n=$(cat \"$1\"); echo $((n + 1)) > \"$1\"' sh \"$1\" || exit 1; \
           i=$((i + 1)); done"
    );
    let flock = Command::new("sh")
        .arg("-c")
        .arg(script)
        .args([&lock, &data])
        .spawn()
        .context("running sh with util-linux flock(1)")?;
    children.push(("flock(1) worker".to_owned(), flock));
    for (name, mut child) in children {
        let status = child.wait()?;
        ensure!(status.success(), "{name} failed: {status}");
    }
    let total: u64 = std::fs::read_to_string(&data)?.trim().parse()?;
    let expected = (workers + 1) * increments;
    println!(
        "counter = {total}, expected {expected}: {} ({:.2?})",
        if total == expected {
            "no lost updates"
        } else {
            "LOST UPDATES"
        },
        started.elapsed()
    );
    if total != expected {
        bail!("{} increments were lost", expected.saturating_sub(total));
    }
    Ok(())
}

fn worker(lock: &Path, data: &Path, increments: u64) -> anyhow::Result<()> {
    let lock = locket::lock_file(lock);
    for _ in 0..increments {
        let _guard = lock.lock()?;
        let n: u64 = std::fs::read_to_string(data)?.trim().parse()?;
        std::fs::write(data, format!("{}\n", n + 1))?;
    }
    Ok(())
}
