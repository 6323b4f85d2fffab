//! The host's memory with many guest instances waiting for a lock.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Context;

/// The host's memory with N guest instances waiting for a lock: the async
/// `serve` example (N instances in one process), and `locket-host run` (one
/// per process).
pub fn run(dir: &Path, sizes: &[usize], report: &mut String) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let serve = exe.parent().context("target dir")?.join("examples/serve");
    writeln!(report, "## Memory\n")?;
    let lock = dir.join("memory.lock");
    let holder = locket::lock_file(&lock);
    holder.acquire()?;
    let grant = locket_tests::grant(dir);
    let counter_args = ["/data/memory.lock", "/data/memory", "1"];
    // One instance per process.
    let mut single =
        locket_tests::host_command(&[&grant], locket_tests::guests::COUNTER, &counter_args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
    locket_tests::wait_for_waiters(&lock, 1)?;
    let single_rss = rss_kib(single.id())?;
    holder.release()?;
    single.wait()?;
    writeln!(
        report,
        "Resident memory (VmRSS) once every instance waits in `acquire` for a lock held elsewhere.\n"
    )?;
    writeln!(
        report,
        "| host | instances | RSS MiB | per instance MiB |\n|---|---:|---:|---:|"
    )?;
    writeln!(
        report,
        "| `locket-host run` | 1 | {:.1} | {:.1} |",
        single_rss / 1024.0,
        single_rss / 1024.0
    )?;
    if !serve.exists() {
        writeln!(
            report,
            "\n(`{}` is not built; the async rows are skipped.)\n",
            serve.display()
        )?;
        return Ok(());
    }
    let mut base = None;
    for &n in sizes {
        holder.acquire()?;
        let mut child = Command::new(&serve)
            .args([
                "--instances",
                &n.to_string(),
                "--workers",
                "2",
                "--dir",
                &format!("{}::/data", dir.display()),
            ])
            .args(std::iter::once(locket_tests::guests::COUNTER).chain(counter_args))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        locket_tests::wait_for_waiters(&lock, n)?;
        let rss = rss_kib(child.id())?;
        holder.release()?;
        anyhow::ensure!(child.wait()?.success(), "serve failed");
        let (n1, rss1) = *base.get_or_insert((n, rss));
        let per = if n > n1 {
            format!("{:.2}", (rss - rss1) / 1024.0 / (n - n1) as f64)
        } else {
            "—".to_owned()
        };
        writeln!(
            report,
            "| async `serve` example, 2 workers | {n} | {:.1} | {per} |",
            rss / 1024.0
        )?;
    }
    writeln!(
        report,
        "\nThe per-instance figure for `serve` is the growth over its first row, per added instance.\n"
    )?;
    Ok(())
}

/// The resident memory (VmRSS) of process `pid`, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")
}
