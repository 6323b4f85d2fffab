//! The Rust plugin of scripts/check-install.sh, built in a fresh `cargo new`
//! project against the packaged `locket-guest`: while another process holds
//! the lock file (ARG 1), a try-once acquire prints `timeout`; then a
//! waiting acquire prints `acquired` once the lock is free.

use std::time::Duration;

fn main() -> Result<(), locket_guest::Error> {
    let path = std::env::args().nth(1).expect("usage: plugin LOCK");
    let lock = locket_guest::lock_file(&path)?;
    match lock.acquire_with(locket_guest::Mode::Exclusive, Some(Duration::ZERO)) {
        Err(locket_guest::Error::Timeout) => println!("timeout"),
        Ok(()) => {
            println!("acquired while held elsewhere");
            locket_guest::exit(1);
        }
        Err(e) => return Err(e),
    }
    lock.acquire_with(locket_guest::Mode::Exclusive, None)?;
    println!("acquired");
    lock.release()
}
