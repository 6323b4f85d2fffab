//! Uncontended acquire+release: the cost of one operation when nobody else
//! wants the lock.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::contenders::{self, Contender, Kind};
use crate::report::Figures;
use crate::stats::median;

/// Per-operation cost of an uncontended acquire+release: the raw floor, the
/// `locket` library, a guest and the Python libraries, in interleaved batches.
pub fn run(
    dir: &Path,
    rounds: usize,
    report: &mut String,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    let path = contenders::aged_lock_file(dir, "uncontended.lock")?;
    let raw = locket_tests::raw_lock_file(&path)?;
    let plain = locket::lock_file(&path);
    let timed = locket::lock_file(&path).with_timeout(Some(Duration::from_secs(5)));
    let unchecked = locket::lock_file(&path).with_replacement_check(false);
    let mut guest = Contender::start(Kind::Guest, dir, "uncontended.lock")?;
    let ops = 2_000;
    let mut samples: [Vec<f64>; 5] = Default::default();
    // What the replaced-file check costs on its own: one fstat of the file
    // held, and, for comparison, the stat of the path it used to take.
    let mut fstat_samples = Vec::new();
    let mut stat_samples = Vec::new();
    // Python is slower per operation: smaller batches, fewer of them.
    let py_kinds: Vec<Kind> = if contenders::python_available() {
        vec![Kind::PyLocket, Kind::PyLocketTry, Kind::Filelock]
    } else {
        Vec::new()
    };
    // A file of their own: locket.py opens its lock file with "wb", which
    // truncates it and so sets its change time at every acquire, and the
    // replaced-file check then walks the path (see `Lock::with_replacement_check`).
    let mut py = py_kinds
        .iter()
        .map(|&k| Contender::start(k, dir, "uncontended-py.lock"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut py_samples = vec![Vec::new(); py.len()];
    let py_ops = 200;
    // Interleave: each round runs a batch of every contender.
    for _ in 0..rounds.max(20) {
        let t = Instant::now();
        for _ in 0..ops {
            raw.lock()?;
            raw.unlock()?;
        }
        samples[0].push(t.elapsed().as_nanos() as f64 / ops as f64);
        for (slot, lock) in [(1, &plain), (2, &timed), (4, &unchecked)] {
            let t = Instant::now();
            for _ in 0..ops {
                lock.acquire()?;
                lock.release()?;
            }
            samples[slot].push(t.elapsed().as_nanos() as f64 / ops as f64);
        }
        let t = Instant::now();
        for _ in 0..ops {
            std::hint::black_box(raw.metadata()?);
        }
        fstat_samples.push(t.elapsed().as_nanos() as f64 / ops as f64);
        let t = Instant::now();
        for _ in 0..ops {
            std::hint::black_box(std::fs::metadata(&path)?);
        }
        stat_samples.push(t.elapsed().as_nanos() as f64 / ops as f64);
        samples[3].push(guest.bench(ops)?);
        for (c, s) in py.iter_mut().zip(py_samples.iter_mut()) {
            s.push(c.bench(py_ops)?);
        }
    }
    guest.finish()?;
    for c in py {
        c.finish()?;
    }
    let floor = median(&mut samples[0].clone());
    let native = median(&mut samples[1].clone());
    writeln!(report, "## Uncontended acquire+release\n")?;
    writeln!(
        report,
        "Median of per-batch means, {ops} operations a batch, {} batches each, interleaved. \
         The guest's loop runs inside the plugin (`locker.wasm bench`), timed by the guest, \
         minus an empty loop of the same length.\n",
        rounds.max(20)
    )?;
    writeln!(
        report,
        "Python contenders run their loop in Python ({py_ops} operations a batch, timed there).\n"
    )?;
    writeln!(
        report,
        "| contender | ns/op | ratio to floor | ratio to `locket` |\n|---|---:|---:|---:|"
    )?;
    for (name, s) in [
        "raw std `File::lock` (floor)",
        "`locket`, no timeout",
        "`locket`, timeout 5 s",
        "guest in `locket-host`",
        "`locket`, replaced-file check off",
    ]
    .iter()
    .zip(samples.iter_mut())
    {
        let m = median(s);
        writeln!(
            report,
            "| {name} | {m:.0} | {:.2}× | {:.2}× |",
            m / floor,
            m / native
        )?;
        match *name {
            "`locket`, no timeout" => figures.record("locket/raw", m / floor),
            "`locket`, replaced-file check off" => figures.record("unchecked/raw", m / floor),
            "guest in `locket-host`" => figures.record("guest/locket", m / native),
            _ => {}
        }
    }
    for (kind, s) in py_kinds.iter().zip(py_samples.iter_mut()) {
        let m = median(s);
        writeln!(
            report,
            "| {} | {m:.0} | {:.2}× | {:.2}× |",
            kind.name(),
            m / floor,
            m / native
        )?;
    }
    let fstat = median(&mut fstat_samples);
    let stat = median(&mut stat_samples);
    figures.record("checked floor/raw", (floor + fstat) / floor);
    writeln!(
        report,
        "\nThe replaced-file check is one `fstat` of the lock file held, after each acquire \
         (the path is walked again only when the file changed in the last 2 s, or is reached \
         through a symlink). Measured alone, in the same rounds, the `fstat` takes {fstat:.0} ns \
         ({:.2}× the whole raw acquire+release), so no lock that checks can cost less than raw + \
         fstat = {:.0} ns, {:.2}× the floor. The `stat` of the path that the check took before \
         takes {stat:.0} ns ({:.2}× the floor).\n",
        fstat / floor,
        floor + fstat,
        (floor + fstat) / floor,
        stat / floor
    )?;
    Ok(())
}
