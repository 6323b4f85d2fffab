//! The demo that `demo.sh` runs: sandboxed plugins and native processes
//! increment one counter under one lock.
//!
//! `locket-demo [WORKERS] [INCREMENTS]` starts WORKERS plugin processes
//! (`locket-host run counter.wasm`), WORKERS native `locket` processes
//! (default 2 of each) and one util-linux `flock(1)` process. Each reads a
//! number from a data file, adds one and writes it back, INCREMENTS times
//! (default 500), holding the lock file for each step. Without the lock,
//! increments would be lost; with it, the total is exact. The data lives in its
//! own file, beside the lock file, which nobody writes. The plugins see the
//! directory as `/data` and nothing else of the host.
//!
//! The plugin is the example in `examples/counter`; the plugin and flock(1)
//! workers are started as the test suite starts them (`locket_tests`).

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
        .map_or(Ok(2), |s| s.parse())
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
        "{workers} plugins (locket-host run counter.wasm), {workers} native locket processes and \
         1 flock(1) process each add 1 to a shared counter {increments} times"
    );
    let started = Instant::now();
    let me = std::env::current_exe()?;
    let mut children: Vec<(String, Child)> = Vec::new();
    for i in 0..workers {
        let plugin = locket_tests::plugin_incrementer(dir.path(), increments)
            .spawn()
            .context("starting locket-host")?;
        children.push((format!("plugin {i}"), plugin));
        let native = Command::new(&me)
            .arg("--worker")
            .args([&lock, &data])
            .arg(increments.to_string())
            .spawn()?;
        children.push((format!("native locket process {i}"), native));
    }
    // util-linux flock(1) takes the same lock around a shell increment.
    let flock = locket_tests::flock_incrementer(&lock, &data, increments)
        .spawn()
        .context("running sh with util-linux flock(1)")?;
    children.push(("flock(1) worker".to_owned(), flock));
    for (name, mut child) in children {
        let status = child.wait()?;
        ensure!(status.success(), "{name} failed: {status}");
    }
    let total: u64 = std::fs::read_to_string(&data)?.trim().parse()?;
    let expected = (2 * workers + 1) * increments;
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
