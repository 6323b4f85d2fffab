//! Plugin start-up, whole `locket-host run` processes: a small plugin, and a
//! large one (the componentize-py locker), cold, cached and precompiled.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::report::Figures;
use crate::stats::median;

/// Start-up of a small plugin: `locket-host run locker.wasm` with nothing to
/// do, cold (`--no-cache`) and warm (a filled compilation cache).
pub fn small(dir: &Path, report: &mut String) -> anyhow::Result<()> {
    let size = std::fs::metadata(locket_tests::guests::LOCKER)?.len();
    let grant = locket_tests::grant(dir);
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

/// Start-up of a large plugin (the componentize-py locker, about 18 MB):
/// cold, from the cache, and precompiled.
pub fn large(
    dir: &Path,
    tries: usize,
    report: &mut String,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    writeln!(report, "## Large plugin start-up\n")?;
    if locket_tests::componentize_py().is_none() {
        writeln!(
            report,
            "(componentize-py is not installed: run scripts/prepare-tests.sh.)\n"
        )?;
        return Ok(());
    }
    let plugin = locket_tests::python_plugin()?;
    let size = std::fs::metadata(&plugin)?.len();
    let grant = locket_tests::grant(dir);
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
            figures.record("large cached/cold", m / cold_ms);
            figures.record("large cached ms", m);
        } else {
            figures.record("large precompiled ms", m);
        }
    }
    writeln!(report)?;
    Ok(())
}
