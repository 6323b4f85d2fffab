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
pub(crate) fn time_run(
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
/// its first run (a cache without it) on Cranelift alone, as before Winch,
/// and as `--compiler auto` does it (Winch now, Cranelift into the cache in
/// the background); the runs after each; and a precompiled artifact.
pub fn large(
    dir: &Path,
    tries: usize,
    report: &mut String,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    writeln!(report, "## Large plugin start-up\n")?;
    if !locket_tests::dist::locket_py().exists() {
        writeln!(
            report,
            "(locket-py is not installed: run scripts/prepare-tests.sh.)\n"
        )?;
        return Ok(());
    }
    let plugin = locket_tests::python_plugin()?;
    let size = std::fs::metadata(&plugin)?.len();
    let grant = locket_tests::grant(dir);
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
    let time =
        |args: &[&str], file: &str, cache: &Path| time_run(args, file, &["/data/x.lock"], cache);
    let cranelift = ["--compiler=cranelift"];
    let (mut first_cranelift, mut first_auto) = (Vec::new(), Vec::new());
    let (mut cached, mut cached_after_auto, mut precompiled) = (Vec::new(), Vec::new(), Vec::new());
    // Each first run gets a cache of its own; the later runs use the last two.
    let (mut cranelift_cache, mut auto_cache) = (dir.join("none"), dir.join("none"));
    for i in 0..tries.max(1) {
        cranelift_cache = dir.join(format!("cache-cranelift-{i}"));
        first_cranelift.push(time(&[&grant, cranelift[0]], &plugin, &cranelift_cache)?);
        auto_cache = dir.join(format!("cache-auto-{i}"));
        first_auto.push(time(&[&grant], &plugin, &auto_cache)?);
        // The background compile must not run into the next measurement.
        wait_for_the_fill(&auto_cache)?;
    }
    for _ in 0..tries.max(1) * 4 {
        cached.push(time(&[&grant], &plugin, &cranelift_cache)?);
        cached_after_auto.push(time(&[&grant], &plugin, &auto_cache)?);
        precompiled.push(time(
            &[&grant, "--allow-precompiled"],
            &artifact,
            &cranelift_cache,
        )?);
    }
    let first_ms = median(&mut first_cranelift);
    let auto_ms = median(&mut first_auto);
    let cached_ms = median(&mut cached);
    let after_auto_ms = median(&mut cached_after_auto);
    let precompiled_ms = median(&mut precompiled);
    writeln!(
        report,
        "`locket-host run` of the componentize-py `locker-py.wasm` ({:.1} MB) that exits at once, \
         whole process: median of {} first runs of each kind (each with an empty cache, waiting \
         for the background compile to finish before going on) and {} of the others, \
         interleaved.\n",
        size as f64 / 1e6,
        first_auto.len(),
        cached.len()
    )?;
    writeln!(
        report,
        "| start | ms | vs Cranelift first run | vs cached |\n|---|---:|---:|---:|"
    )?;
    for (label, ms) in [
        (
            "first run, Cranelift only (`--compiler cranelift`, the path before Winch)",
            first_ms,
        ),
        (
            "first run, `--compiler auto` (Winch; Cranelift into the cache in the background)",
            auto_ms,
        ),
        ("cached, after a Cranelift first run", cached_ms),
        (
            "cached, after an auto first run (the background compile's entry)",
            after_auto_ms,
        ),
        ("precompiled (`--allow-precompiled`)", precompiled_ms),
    ] {
        writeln!(
            report,
            "| {label} | {ms:.1} | {:.3}× | {:.2}× |",
            ms / first_ms,
            ms / cached_ms
        )?;
    }
    writeln!(report)?;
    figures.record("large first auto/cranelift", auto_ms / first_ms);
    figures.record("large after auto/cached", after_auto_ms / cached_ms);
    figures.record("large cached/cold", cached_ms / first_ms);
    figures.record("large cached ms", cached_ms);
    figures.record("large precompiled ms", precompiled_ms);
    Ok(())
}

/// Waits until the background compile that a first run started in `cache`
/// is done: an entry is there and no `fill-cache` holds its lock.
fn wait_for_the_fill(cache: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let mut entry = false;
        let mut busy = false;
        for e in std::fs::read_dir(cache)? {
            let path = e?.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("cwasm") => entry = true,
                Some("filling") => {
                    let lock = locket::lock_file(&path);
                    busy |= lock
                        .acquire_with(locket::Mode::Exclusive, Some(std::time::Duration::ZERO))
                        .is_err();
                }
                _ => {}
            }
        }
        if entry && !busy {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed().as_secs() < 300,
            "the background compile in {} did not finish",
            cache.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
