//! A plugin that increments a number stored in a data file N times, taking the
//! lock file for each step, so that it shares the counter safely with other
//! plugins and native processes.
//!
//! Run it with the directory holding both files granted as `/data`:
//!
//! ```text
//! locket-host run --dir ./shared::/data counter.wasm /data/counter.lock /data/counter 500
//! ```
//!
//! The data file holds one decimal number (a missing or empty file counts as
//! 0). The lock file is only locked, never written.

use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, lock, data, n] = args.as_slice() else {
        eprintln!("usage: counter LOCK_FILE DATA_FILE N");
        locket_guest::exit(2);
    };
    let Ok(n) = n.parse::<u64>() else {
        eprintln!("counter: N must be a whole number, got {n:?}");
        locket_guest::exit(2);
    };
    if let Err(e) = run(lock, data, n) {
        eprintln!("counter: {e}");
        locket_guest::exit(1);
    }
}

fn run(lock: &str, data: &str, n: u64) -> Result<(), Box<dyn std::error::Error>> {
    let lock = locket_guest::lock_file(lock)?;
    let started = Instant::now();
    for _ in 0..n {
        let _guard = lock.lock()?;
        let text = match std::fs::read_to_string(data) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(format!("reading {data}: {e}").into()),
        };
        let value: u64 = if text.trim().is_empty() {
            0
        } else {
            text.trim()
                .parse()
                .map_err(|e| format!("{data} holds {text:?}: {e}"))?
        };
        std::fs::write(data, format!("{}\n", value + 1))
            .map_err(|e| format!("writing {data}: {e}"))?;
    }
    eprintln!("counter: {n} increments in {:.2?}", started.elapsed());
    Ok(())
}
