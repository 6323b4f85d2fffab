//! Builds the plugins for wasm32-wasip2 (the example counter and the plugin
//! peers), so that the test suite, the demo and the benchmark always run the
//! plugins of this very checkout.
//!
//! The nested cargo uses its own target directory: the outer build holds the
//! lock on the main one. Paths reach the tests as `GUEST_<NAME>` variables.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const GUESTS: [&str; 4] = ["counter", "locker", "holder", "legacy"];

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().to_path_buf();
    for watched in [
        "guest/src",
        "guest/Cargo.toml",
        "examples/counter",
        "tests/peers/plugins",
        "wit",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    // OUT_DIR is TARGET/PROFILE/build/PKG-HASH/out: share one guest build per TARGET.
    let target = out
        .ancestors()
        .nth(4)
        .map_or_else(|| out.join("guests"), |t| t.join("wasm-guests"));
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip2",
        ])
        .args(["-p", "locket-example-counter", "-p", "locket-peer-plugins"])
        .args(["--bins", "--target-dir"])
        .arg(&target)
        // Flags meant for the host build must not leak into the guest build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_MAKEFLAGS")
        .status()
        .expect("running cargo to build the guest plugins");
    assert!(
        status.success(),
        "building the guest plugins for wasm32-wasip2 failed (is the target installed? \
         rust-toolchain.toml asks rustup for it)"
    );
    for guest in GUESTS {
        let wasm = target.join(format!("wasm32-wasip2/release/{guest}.wasm"));
        assert!(wasm.exists(), "{} was not built", wasm.display());
        println!(
            "cargo:rustc-env=GUEST_{}={}",
            guest.to_uppercase(),
            wasm.display()
        );
    }
}
