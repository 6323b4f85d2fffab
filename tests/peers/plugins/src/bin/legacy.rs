//! A plugin built against `locket:lock@0.1.0` as it was released, before
//! `token` existed (`wit-0.1.0/`), with raw bindings rather than the SDK,
//! which follows the newest WIT. It shows that such a component runs
//! unchanged on a newer host.
//!
//! ```text
//! locket-host run --dir .::. legacy.wasm x.lock
//! ```
//!
//! It prints `ready`, acquires the lock, prints `acquired` and
//! `is-locked true`, waits for a line on stdin, releases, and prints
//! `released` (or the error it got).

use std::io::BufRead;

mod bindings {
    wit_bindgen::generate!({
        path: "wit-0.1.0",
        world: "locket:lock/imports",
    });
}

use bindings::locket::lock::locket;

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: legacy LOCK_FILE");
        std::process::exit(2);
    };
    println!("ready");
    let lock = match locket::lock_file(&path) {
        Ok(lock) => lock,
        Err(e) => {
            println!("error: {e:?}");
            return;
        }
    };
    if let Err(e) = lock.acquire(None) {
        println!("error: {e:?}");
        return;
    }
    println!("acquired");
    println!("is-locked {}", lock.is_locked());
    let _ = std::io::stdin().lock().lines().next();
    match lock.release() {
        Ok(()) => println!("released"),
        Err(e) => println!("error: {e:?}"),
    }
}
