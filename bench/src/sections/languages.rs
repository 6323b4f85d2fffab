//! Guest languages: the Python and JavaScript guests (built by `locket-py`
//! and `locket-js`) against the Rust guest and native locket.py: the cost of
//! one uncontended acquire+release, start-up cold and cached, and the size
//! of each plugin.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use locket_tests::{LineProcess, PROMPT, Peer};

use crate::sections::startup::time_run;
use crate::stats::median;

/// The plugins of each language, those that could be built.
fn plugins(report: &mut String) -> anyhow::Result<Vec<(&'static str, PathBuf)>> {
    let mut plugins = vec![("Rust", PathBuf::from(locket_tests::guests::LOCKER))];
    for (name, built) in [
        ("Python", locket_tests::python_plugin()),
        ("JavaScript", locket_tests::js_plugin()),
    ] {
        match built {
            Ok(wasm) => plugins.push((name, wasm)),
            Err(e) => writeln!(report, "(the {name} guest was not measured: {e})\n")?,
        }
    }
    Ok(plugins)
}

/// The section: `batches` interleaved batches of `cycles` acquire+release
/// cycles per contender, and `starts` timed runs of each start.
pub fn run(
    dir: &Path,
    batches: usize,
    cycles: usize,
    starts: usize,
    report: &mut String,
) -> anyhow::Result<()> {
    writeln!(report, "## Guest languages\n")?;
    let plugins = plugins(report)?;
    let path = dir.join("languages.lock");
    // Aged as in the uncontended section: the replaced-file check trusts a
    // lock file's change time once it is 2 s old.
    std::fs::write(&path, "")?;
    std::thread::sleep(Duration::from_millis(2100));
    let grant = locket_tests::grant(dir);
    let mut contenders = Vec::new();
    for (name, wasm) in &plugins {
        let command = locket_tests::host_command(
            &[&grant],
            &wasm.display().to_string(),
            &["/data/languages.lock"],
        );
        contenders.push((
            format!("{name} guest"),
            LineProcess::spawn_within(command, PROMPT * 6)?,
        ));
    }
    let python = locket_tests::venv_python().is_some();
    if python {
        contenders.push((
            "locket.py, native (CPython)".to_owned(),
            Peer::PyLocket.start(dir, "languages.lock")?,
        ));
    }
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); contenders.len()];
    for _ in 0..batches {
        for (i, (_, c)) in contenders.iter_mut().enumerate() {
            c.send(&format!("bench {cycles}"))?;
            ns[i].push(c.number::<f64>()?);
        }
    }
    for (_, mut c) in contenders {
        let _ = c.wait();
    }
    let names: Vec<String> = plugins
        .iter()
        .map(|(n, _)| format!("{n} guest"))
        .chain(python.then(|| "locket.py, native (CPython)".to_owned()))
        .collect();
    let medians: Vec<f64> = ns.iter_mut().map(|v| median(v)).collect();
    let rust = medians[0];
    let py_native = python.then(|| medians[medians.len() - 1]);
    writeln!(report, "### Uncontended acquire+release\n")?;
    writeln!(
        report,
        "Each guest times its own loop of {cycles} cycles (`bench N`, less an empty loop), \
         {batches} batches interleaved; the median. The lock file is the same for all.\n"
    )?;
    writeln!(
        report,
        "| contender | ns per cycle | vs the Rust guest | vs locket.py native |\n|---|---:|---:|---:|"
    )?;
    for (name, m) in names.iter().zip(&medians) {
        let vs_py = py_native.map_or_else(|| "—".to_owned(), |p| format!("{:.2}×", m / p));
        writeln!(report, "| {name} | {m:.0} | {:.2}× | {vs_py} |", m / rust)?;
    }
    writeln!(report)?;

    writeln!(report, "### Start-up and size\n")?;
    writeln!(
        report,
        "Whole `locket-host run` processes of each language's line-protocol plugin, which \
         exits at once (no input), median of {starts}. Cold: compiled for the run by Winch, \
         as a first run is, with no cache. Cached: Cranelift's code mapped from a filled \
         cache, as every later run.\n"
    )?;
    writeln!(
        report,
        "| plugin | size, MB | cold, ms | cached, ms |\n|---|---:|---:|---:|"
    )?;
    for (name, wasm) in &plugins {
        let wasm = wasm.display().to_string();
        let size = std::fs::metadata(&wasm)?.len() as f64 / 1e6;
        let cache = dir.join(format!("cache-{name}"));
        time_run(&["--compiler=cranelift"], &wasm, &[], &cache)?; // fills it
        let mut cold = Vec::new();
        let mut cached = Vec::new();
        for _ in 0..starts {
            cold.push(time_run(
                &["--compiler=winch", "--no-cache"],
                &wasm,
                &[],
                &cache,
            )?);
            cached.push(time_run(&[], &wasm, &[], &cache)?);
        }
        writeln!(
            report,
            "| {name} | {size:.1} | {:.0} | {:.1} |",
            median(&mut cold),
            median(&mut cached)
        )?;
    }
    writeln!(report)?;
    Ok(())
}
