//! A [wasmtime] host for `locket:lock/locket`: file locks for sandboxed
//! WebAssembly components, implemented with real OS file locks by the
//! [`locket`] crate.
//!
//! A guest that imports the interface excludes, and is excluded by, every
//! other holder of the same file: other guests, and native processes using
//! `flock(2)`. Guests lock only files beneath the directories granted to them
//! ([`Grants`]), and every lock a guest holds is released when its store is
//! dropped, however the guest ended.
//!
//! Embedding takes one [`add_to_linker`] call, in the style of
//! `wasmtime-wasi`:
//!
//! ```no_run
//! use std::sync::Arc;
//! use locket_host::{Access, Grants, LocketCtx, PluginState};
//! use wasmtime::component::{Component, Linker};
//! use wasmtime::{Engine, Store};
//! use wasmtime_wasi::WasiCtx;
//!
//! # fn main() -> anyhow::Result<()> {
//! let engine = Engine::default();
//! let mut linker = Linker::<PluginState>::new(&engine);
//! wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
//! locket_host::add_to_linker(&mut linker)?;
//!
//! // One `Grants` configures both the WASI preopens and the locks.
//! let mut grants = Grants::new();
//! grants.grant("/srv/shared", "/data", Access::ReadWrite)?;
//! let mut wasi = WasiCtx::builder();
//! grants.add_to_wasi(&mut wasi)?;
//! let state = PluginState::new(wasi.build(), LocketCtx::new(Arc::new(grants)));
//!
//! let mut store = Store::new(&engine, state);
//! let component = Component::from_file(&engine, "plugin.wasm")?;
//! let command =
//!     wasmtime_wasi::p2::bindings::sync::Command::instantiate(&mut store, &component, &linker)?;
//! let _ = command.wasi_cli_run().call_run(&mut store)?;
//! # Ok(())
//! # }
//! ```
//!
//! A store whose data is your own type works the same: implement
//! [`LocketView`] for it (and `WasiView`), as [`PluginState`] does.
//!
//! The host runs on Unix only: lock files are opened with `O_NONBLOCK` and
//! created with a file mode, and the `locket-host` command uses POSIX
//! signals. (The `locket` library itself also runs on Windows.)

#![warn(missing_docs)]

#[cfg(not(unix))]
compile_error!(
    "locket-host runs on Unix only: it opens lock files with O_NONBLOCK and file modes, \
     and its command uses POSIX signals; the `locket` library also supports Windows"
);

mod bindings;
mod ctx;
mod error;
mod grant_opener;
mod grants;
mod guest_path;
mod handle;
mod host;
mod linker;
mod store;

pub use ctx::{DEFAULT_MAX_LOCKS, LockStats, LocketCtx, LocketCtxView, LocketView};
pub use error::{DeadlineExceeded, WitError};
pub use grants::{Access, Grant, GrantError, Grants, LockNamespace};
pub use handle::LockHandle;
pub use linker::{add_to_linker, add_to_linker_async};
pub use store::PluginState;

/// The WIT package this host implements, from `wit/locket.wit` (which the
/// crate carries). The linker matches imports by semver, so a component
/// built against any earlier `locket:lock@0.1.x` runs too.
pub const WIT_PACKAGE: &str = "locket:lock@0.1.1";

/// The WASI release whose interfaces the host links (wasmtime-wasi's
/// WASI 0.2, vendored in `wit/deps`). Components that import an earlier
/// 0.2.x run too.
pub const WASI_VERSION: &str = "0.2.12";

/// The wasmtime release this host is built with: the version of its
/// `wasmtime-environ`, which wasmtime pins exactly to its own.
pub const WASMTIME_VERSION: &str = wasmtime_environ::VERSION;

#[cfg(test)]
mod tests {
    /// The `package` line of a WIT file.
    fn package_of(wit: &str) -> &str {
        wit.lines()
            .find_map(|line| line.strip_prefix("package "))
            .and_then(|rest| rest.strip_suffix(';'))
            .expect("a WIT file names its package")
    }

    #[test]
    fn the_versions_the_host_names_are_those_of_its_wit() {
        assert_eq!(
            package_of(include_str!("../wit/locket.wit")),
            super::WIT_PACKAGE
        );
        assert_eq!(
            package_of(include_str!("../wit/deps/cli.wit")),
            format!("wasi:cli@{}", super::WASI_VERSION)
        );
    }
}
