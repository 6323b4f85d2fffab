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
//! use locket_host::{Access, Grants, LocketCtx, LocketCtxView, LocketView};
//! use wasmtime::component::{Component, Linker, ResourceTable};
//! use wasmtime::{Engine, Store};
//! use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
//!
//! struct State { wasi: WasiCtx, locket: LocketCtx, table: ResourceTable }
//!
//! impl WasiView for State {
//!     fn ctx(&mut self) -> WasiCtxView<'_> {
//!         WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
//!     }
//! }
//! impl LocketView for State {
//!     fn locket(&mut self) -> LocketCtxView<'_> {
//!         LocketCtxView { ctx: &mut self.locket, table: &mut self.table }
//!     }
//! }
//!
//! # fn main() -> anyhow::Result<()> {
//! let engine = Engine::default();
//! let mut linker = Linker::<State>::new(&engine);
//! wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
//! locket_host::add_to_linker(&mut linker)?;
//!
//! // One `Grants` configures both the WASI preopens and the locks.
//! let mut grants = Grants::new();
//! grants.grant("/srv/shared", "/data", Access::ReadWrite)?;
//! let mut wasi = WasiCtx::builder();
//! grants.add_to_wasi(&mut wasi)?;
//! let state = State {
//!     wasi: wasi.build(),
//!     locket: LocketCtx::new(Arc::new(grants)),
//!     table: ResourceTable::new(),
//! };
//!
//! let mut store = Store::new(&engine, state);
//! let component = Component::from_file(&engine, "plugin.wasm")?;
//! let command =
//!     wasmtime_wasi::p2::bindings::sync::Command::instantiate(&mut store, &component, &linker)?;
//! let _ = command.wasi_cli_run().call_run(&mut store)?;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod ctx;
mod grants;

pub use ctx::{
    DEFAULT_MAX_LOCKS, DeadlineExceeded, LockHandle, LockStats, LocketCtx, LocketCtxView,
    LocketView, add_to_linker, add_to_linker_async,
};
pub use grants::{Access, Grant, GrantError, Grants};

/// Bindings generated from `wit/`; the WIT error type is re-exported as
/// [`WitError`].
mod generated {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "locket:lock/imports",
        imports: { default: trappable },
        with: {
            "locket:lock/locket.lock": crate::ctx::LockHandle,
        },
    });
}

/// The same interface with `acquire` and `acquire-shared` as async host
/// functions, for [`add_to_linker_async`]. Only the waits are async; the
/// lock resource is the same [`LockHandle`] as in the blocking bindings.
mod generated_async {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "locket:lock/imports",
        imports: {
            "locket:lock/locket.[method]lock.acquire": async | trappable,
            "locket:lock/locket.[method]lock.acquire-shared": async | trappable,
            default: trappable,
        },
        with: {
            "locket:lock/locket.lock": crate::ctx::LockHandle,
        },
        require_store_data_send: true,
    });
}

/// The guest-visible error of the `locket` interface.
pub use generated::locket::lock::locket::Error as WitError;

/// The same WIT error as generated for [`add_to_linker_async`]'s bindings
/// (it converts from [`WitError`]).
pub use generated_async::locket::lock::locket::Error as AsyncWitError;
