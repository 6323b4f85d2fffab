//! A plugin that takes a lock, says so, holds it for a while, and exits.
//!
//! ```text
//! locket-host run --dir ./shared::/data holder.wasm /data/x.lock 2.5 [shared]
//! ```
//!
//! It prints `acquired` once it holds the lock (exclusive, or shared with the
//! third argument `shared`), then holds it for the given number of seconds.

use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (path, seconds, shared) = match args.as_slice() {
        [_, path, secs] => (path, secs, false),
        [_, path, secs, mode] if mode == "shared" => (path, secs, true),
        _ => {
            eprintln!("usage: holder LOCK_FILE SECONDS [shared]");
            locket_guest::exit(2);
        }
    };
    let Ok(seconds) = seconds.parse::<f64>() else {
        eprintln!("holder: SECONDS must be a number, got {seconds:?}");
        locket_guest::exit(2);
    };
    let held = locket_guest::lock_file(path).and_then(|lock| {
        if shared {
            lock.acquire_shared()?;
        } else {
            lock.acquire()?;
        }
        Ok(lock)
    });
    match held {
        Ok(_lock) => {
            println!("acquired");
            std::thread::sleep(Duration::from_secs_f64(seconds));
        }
        Err(e) => {
            eprintln!("holder: {e}");
            locket_guest::exit(1);
        }
    }
}
