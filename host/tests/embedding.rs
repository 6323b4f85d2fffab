//! The host library, embedded in this process: several instances, one engine.

mod common;

use std::sync::Arc;

use locket_host::{Access, Grants, PluginState};
use locket_tests::guests;
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};

struct Host {
    engine: Engine,
    linker: Linker<PluginState>,
    locker: Component,
    grants: Arc<Grants>,
}

impl Host {
    fn new(dir: &std::path::Path) -> Self {
        let engine = Engine::default();
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
        locket_host::add_to_linker(&mut linker).unwrap();
        let locker = Component::from_file(&engine, guests::LOCKER).unwrap();
        let mut grants = Grants::new();
        grants.grant(dir, "/data", Access::ReadWrite).unwrap();
        Self {
            engine,
            linker,
            locker,
            grants: Arc::new(grants),
        }
    }

    /// Runs the locker plugin on `input` in a new store and returns the store
    /// (still holding whatever the guest did not release) and its output.
    fn run(&self, input: &str) -> (Store<PluginState>, String) {
        common::run_locker(
            &self.engine,
            &self.linker,
            &self.locker,
            &self.grants,
            "/data/x.lock",
            input,
        )
    }
}

#[test]
fn two_instances_in_one_process_exclude_each_other_until_a_store_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::new(dir.path());
    // `exit 0` ends the guest without dropping its handle: the store holds it.
    let (holder, out) = host.run("acquire\nexit 0\n");
    assert_eq!(out, "ready\nacquired\n");
    let (_other, out) = host.run("acquire 0\nacquire-shared 0\n");
    assert_eq!(
        out,
        "ready\nerror: timeout: the lock is held elsewhere\nerror: timeout: the lock is held elsewhere\n"
    );
    drop(holder);
    let (_third, out) = host.run("acquire 0\n");
    assert_eq!(out, "ready\nacquired\n");
}

#[test]
fn a_guest_that_returns_normally_releases_everything() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::new(dir.path());
    let (store, out) = host.run("acquire\nopen /data/y.lock\n#1 acquire-shared\n");
    assert_eq!(out, "ready\nacquired\nopened 1\nacquired\n");
    assert_eq!(store.data().locket.live_handles(), 0);
    let (_store, out) = host.run("acquire 0\nopen /data/y.lock\n#1 acquire 0\n");
    assert_eq!(out, "ready\nacquired\nopened 1\nacquired\n");
}
