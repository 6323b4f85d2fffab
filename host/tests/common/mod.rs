//! What the embedding tests share: one run of the locker plugin in a store
//! of its own.

use std::sync::Arc;

use locket_host::{Grants, LocketCtx, PluginState};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::bindings::sync::Command;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{I32Exit, WasiCtx};

/// Runs the `locker` component on `input`, handle 0 on the guest path
/// `path`, in a new store with `grants` (for WASI and locks alike), and
/// returns the store (still holding whatever the guest did not release)
/// and the plugin's output.
pub fn run_locker(
    engine: &Engine,
    linker: &Linker<PluginState>,
    locker: &Component,
    grants: &Arc<Grants>,
    path: &str,
    input: &str,
) -> (Store<PluginState>, String) {
    let stdout = MemoryOutputPipe::new(64 * 1024);
    let mut wasi = WasiCtx::builder();
    wasi.stdin(MemoryInputPipe::new(input.to_owned()))
        .stdout(stdout.clone())
        .args(&["locker.wasm", path]);
    grants.add_to_wasi(&mut wasi).unwrap();
    let state = PluginState::new(wasi.build(), LocketCtx::new(Arc::clone(grants)));
    let mut store = Store::new(engine, state);
    let command = Command::instantiate(&mut store, locker, linker).unwrap();
    match command.wasi_cli_run().call_run(&mut store) {
        Ok(_) => {}
        Err(e) => assert_eq!(e.downcast_ref::<I32Exit>().map(|e| e.0), Some(0), "{e:?}"),
    }
    let output = String::from_utf8(stdout.contents().to_vec()).unwrap();
    (store, output)
}
