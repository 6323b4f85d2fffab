//! The host library on an async engine: many guests waiting for locks on a
//! small tokio runtime, and cancellation that never leaves a lock held.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use locket::{LockError, Mode, lock_file};
use locket_host::{Access, Grants, LocketCtx, PluginState};
use locket_tests::guests;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store, Trap};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi::p2::bindings::Command;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;

/// A generous upper bound for things that should happen at once.
const PROMPT: Duration = Duration::from_secs(60);

struct Host {
    engine: Engine,
    linker: Linker<PluginState>,
    grants: Arc<Grants>,
}

impl Host {
    fn new(dir: &Path, epochs: bool) -> Self {
        let mut config = Config::new();
        config.epoch_interruption(epochs);
        let engine = Engine::new(&config).unwrap();
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
        locket_host::add_to_linker_async(&mut linker).unwrap();
        let mut grants = Grants::new();
        grants.grant(dir, "/data", Access::ReadWrite).unwrap();
        Self {
            engine,
            linker,
            grants: Arc::new(grants),
        }
    }

    fn store(&self, args: &[&str], stdin: &str) -> Store<PluginState> {
        let mut wasi = WasiCtx::builder();
        wasi.args(args)
            .stdin(MemoryInputPipe::new(stdin.to_owned()));
        self.grants.add_to_wasi(&mut wasi).unwrap();
        let state = PluginState::new(wasi.build(), LocketCtx::new(Arc::clone(&self.grants)));
        Store::new(&self.engine, state)
    }
}

/// Whether a native handle can take the lock at once.
fn is_free(path: &Path) -> bool {
    match lock_file(path).acquire_with(Mode::Exclusive, Some(Duration::ZERO)) {
        Ok(()) => true,
        Err(LockError::Timeout { .. }) => false,
        Err(e) => panic!("probing {}: {e}", path.display()),
    }
}

/// Whether the kernel shows a process blocked on `path`'s lock.
fn has_waiter(path: &Path) -> bool {
    locket_tests::lock_waiters(path).unwrap() > 0
}

/// Waits until the kernel shows a process blocked on `path`'s lock, on a
/// blocking thread, so that the runtime's workers go on serving the guests.
async fn wait_for_a_waiter(path: &Path) {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || locket_tests::wait_for_waiters(&path, 1))
        .await
        .unwrap()
        .unwrap();
}

fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

/// 64 counter guests, each incrementing a shared file under the lock, served
/// by 2 worker threads. A wait that blocked a worker would stall the others
/// (and with every worker blocked, the holder could never finish); a lost
/// update would show in the total.
#[test]
fn sixty_four_instances_on_two_worker_threads_lose_no_update() {
    const INSTANCES: usize = 64;
    const STEPS: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let host = Arc::new(Host::new(dir.path(), false));
    let component = Component::from_file(&host.engine, guests::COUNTER).unwrap();
    let steps = STEPS.to_string();
    let args = ["counter.wasm", "/data/c.lock", "/data/c", steps.as_str()];
    let acquired = runtime(2).block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..INSTANCES {
            let mut store = host.store(&args, "");
            let (host, component) = (Arc::clone(&host), component.clone());
            tasks.push(tokio::spawn(async move {
                let command = Command::instantiate_async(&mut store, &component, &host.linker)
                    .await
                    .unwrap();
                let ran = command.wasi_cli_run().call_run(&mut store).await.unwrap();
                assert_eq!(ran, Ok(()), "a counter guest failed");
                store.data().locket.stats().acquired
            }));
        }
        let mut acquired = 0;
        for task in tasks {
            acquired += tokio::time::timeout(PROMPT, task).await.unwrap().unwrap();
        }
        acquired
    });
    assert_eq!(acquired, (INSTANCES * STEPS) as u64);
    let total = fs::read_to_string(dir.path().join("c")).unwrap();
    assert_eq!(total.trim(), (INSTANCES * STEPS).to_string());
}

/// A guest waits for a lock a native process holds; the embedder gives up on
/// it by dropping the call's future. The wait ends with it: when the native
/// holder lets go, the lock is free, not taken by the abandoned guest.
#[test]
fn dropping_a_waiting_guest_never_leaves_the_lock_held() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.lock");
    let host = Host::new(dir.path(), false);
    let component = Component::from_file(&host.engine, guests::LOCKER).unwrap();
    let native = lock_file(&path);
    native.acquire().unwrap();
    let rt = runtime(2);
    for wait in ["acquire", "acquire 600000", "acquire-shared"] {
        let mut store = host.store(&["locker.wasm", "/data/x.lock"], &format!("{wait}\n"));
        let outcome = rt.block_on(async {
            let command = Command::instantiate_async(&mut store, &component, &host.linker)
                .await
                .unwrap();
            let call = command.wasi_cli_run().call_run(&mut store);
            // Give up on the guest as soon as it waits in the kernel.
            let mut call = std::pin::pin!(call);
            let mut waiting = std::pin::pin!(wait_for_a_waiter(&path));
            std::future::poll_fn(|cx| match call.as_mut().poll(cx) {
                Poll::Ready(ran) => Poll::Ready(Some(ran)),
                Poll::Pending => waiting.as_mut().poll(cx).map(|()| None),
            })
            .await
        });
        assert!(outcome.is_none(), "{wait}: the guest ended: {outcome:?}");
        let stats = store.data().locket.stats();
        assert_eq!(
            (stats.acquired, stats.cancelled),
            (0, 1),
            "{wait}: {stats:?}"
        );
        assert!(!has_waiter(&path), "{wait}: the abandoned wait goes on");
        native.release().unwrap();
        assert!(is_free(&path), "{wait}: the abandoned guest took the lock");
        drop(store);
        native.acquire().unwrap();
    }
}

/// Epoch interruption stops a guest once it runs wasm code again: a guest
/// that waited for the lock past its epoch deadline gets it, traps at once,
/// and dropping its store frees the lock.
#[test]
fn epoch_interruption_of_a_waiting_guest_leaves_no_lock_held() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.lock");
    let host = Host::new(dir.path(), true);
    let component = Component::from_file(&host.engine, guests::LOCKER).unwrap();
    let native = lock_file(&path);
    native.acquire().unwrap();
    let mut store = host.store(&["locker.wasm", "/data/x.lock"], "acquire\nspin\n");
    store.set_epoch_deadline(1);
    store.epoch_deadline_trap();
    let rt = runtime(2);
    let outcome = rt.block_on(async {
        let command = Command::instantiate_async(&mut store, &component, &host.linker)
            .await
            .unwrap();
        let engine = host.engine.clone();
        let call = tokio::spawn(async move {
            let ran = command.wasi_cli_run().call_run(&mut store).await;
            (ran, store)
        });
        // Once the guest waits in the host, where epochs cannot stop it, its
        // deadline passes.
        wait_for_a_waiter(&path).await;
        engine.increment_epoch();
        native.release().unwrap();
        tokio::time::timeout(PROMPT, call).await.unwrap().unwrap()
    });
    let (ran, store) = outcome;
    let error = ran.expect_err("the guest should have been interrupted");
    assert_eq!(
        error.downcast_ref::<Trap>(),
        Some(&Trap::Interrupt),
        "{error:?}"
    );
    assert_eq!(store.data().locket.stats().acquired, 1);
    assert!(
        !is_free(&path),
        "the interrupted guest's store still holds it"
    );
    drop(store);
    assert!(is_free(&path));
}

/// The `serve` example (built by `cargo test` with the other targets) serves
/// 64 counter instances from 2 worker threads, with an exact total.
#[test]
fn the_serve_example_serves_sixty_four_counters_exactly() {
    let exe = std::env::current_exe().unwrap();
    let serve = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/serve");
    assert!(
        serve.exists(),
        "{} is missing: run the suite with `cargo test --workspace`, which builds examples",
        serve.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let grant = format!("{}::/data", dir.path().display());
    let output = std::process::Command::new(&serve)
        .args(["--instances", "64", "--workers", "2", "--dir", &grant])
        .args([guests::COUNTER, "/data/c.lock", "/data/c", "5"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("served 64 instances on 2 worker threads"),
        "{stdout}"
    );
    assert!(stdout.contains("0 failed, 320 locks acquired"), "{stdout}");
    let total = fs::read_to_string(dir.path().join("c")).unwrap();
    assert_eq!(total.trim(), "320");
}
