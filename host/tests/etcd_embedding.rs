//! The host library embedded in this process with an etcd lock namespace.
//! (A file of its own, so a process of its own: the etcd cluster's members
//! are forked from this process, and a fork while another test's file lock
//! is open would hold that lock in the child until it execs.)
#![cfg(target_os = "linux")]

mod common;

use std::sync::Arc;

use locket_host::Grants;
use locket_tests::etcd::EtcdCluster;
use locket_tests::guests;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

/// Instances that share one etcd session, and so one lease, still exclude
/// each other: every acquire has a key of its own.
#[test]
fn two_instances_sharing_one_etcd_session_exclude_each_other() {
    let cluster = EtcdCluster::start(1).unwrap();
    let session = cluster.session();
    let mut grants = Grants::new();
    grants
        .grant_locks(&session, "embedded", "/cluster")
        .unwrap();
    let grants = Arc::new(grants);
    let engine = Engine::default();
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    locket_host::add_to_linker(&mut linker).unwrap();
    let locker = Component::from_file(&engine, guests::LOCKER).unwrap();
    let go =
        |input: &str| common::run_locker(&engine, &linker, &locker, &grants, "/cluster/x", input);

    // `exit 0` ends the guest without dropping its handle: the store holds it.
    let (holder, out) = go("acquire\nexit 0\n");
    assert_eq!(out, "ready\nacquired\n");
    let (_other, out) = go("acquire 0\nacquire-shared 0\n");
    let timeouts = out
        .lines()
        .filter(|l| l.starts_with("error: timeout"))
        .count();
    assert_eq!(timeouts, 2, "{out}");
    // Dropping the store drops the handle, which deletes its key.
    drop(holder);
    let (_third, out) = go("acquire 10000\ntoken\n");
    assert!(out.starts_with("ready\nacquired\ntoken "), "{out}");
    assert_ne!(out.lines().nth(2), Some("token none"), "{out}");
}
