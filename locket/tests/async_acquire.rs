//! The async acquire: it never blocks the executor, hands the lock over
//! promptly, honours timeouts, and leaves nothing held when cancelled.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use locket::{FileId, Lock, LockError, Mode, OpenError, Opener, lock_file};

mod common;

use common::{PROMPT, TRY_ONCE, scratch};

/// Runs this file's tests one at a time. Two of them count the process's
/// POSIX timers, and the others make timers (every timed or cancellable wait
/// does), so a test running beside them would change the count.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether another handle can take the lock at once (and then lets it go).
fn is_free(path: &Path) -> bool {
    common::is_free(path, Mode::Exclusive)
}

/// The POSIX timers this process has now (each timed kernel wait makes one).
fn posix_timers() -> usize {
    fs::read_to_string("/proc/self/timers")
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("ID:"))
        .count()
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

#[test]
fn uncontended_acquire_completes_and_the_guard_releases() {
    let _serial = one_at_a_time();
    let (_dir, path) = scratch();
    current_thread().block_on(async {
        let lock = lock_file(&path);
        // Uncontended: done in the first poll, no helper thread needed.
        let first = futures_poll_once(std::pin::pin!(lock.acquire_async())).await;
        assert!(matches!(first, Some(Ok(()))), "{first:?}");
        lock.release().unwrap();
        let guard = lock.lock_async().await.unwrap();
        assert_eq!(guard.mode(), Mode::Exclusive);
        assert!(!is_free(&path));
        drop(guard);
        assert!(is_free(&path));
        lock.acquire_shared_async().await.unwrap();
        assert_eq!(lock.mode(), Some(Mode::Shared));
        let reader = lock_file(&path);
        reader.acquire_shared_async().await.unwrap();
        lock.release().unwrap();
        reader.release().unwrap();
    });
}

/// One runtime thread: if the async acquire blocked it, the task that holds
/// the lock could never run to release it, and this test would hang.
#[test]
fn a_waiting_acquire_does_not_block_a_single_threaded_runtime() {
    let _serial = one_at_a_time();
    let (_dir, path) = scratch();
    let outcome = current_thread().block_on(async {
        let holder = lock_file(&path);
        holder.acquire_async().await.unwrap();
        let waiter = lock_file(&path);
        // The holder lets go from another task on the same thread, which can
        // only run while the waiter's acquire is pending.
        let releaser = tokio::spawn(async move {
            tokio::task::yield_now().await;
            holder.release().unwrap();
        });
        let wait = waiter.acquire_async().await;
        releaser.await.unwrap();
        wait.map(|()| waiter.is_locked())
    });
    assert!(outcome.unwrap());
}

#[test]
fn a_waiter_with_or_without_timeout_gets_the_lock_when_it_is_released() {
    let _serial = one_at_a_time();
    let (_dir, path) = scratch();
    for timeout in [None, Some(Duration::from_secs(60))] {
        let rt = current_thread();
        rt.block_on(async {
            let holder = lock_file(&path);
            holder.acquire().unwrap();
            let waiter = lock_file(&path).with_timeout(timeout);
            let mut wait = std::pin::pin!(waiter.acquire_async());
            // The first poll finds the lock held and leaves a thread waiting.
            assert!(futures_poll_once(wait.as_mut()).await.is_none());
            let released = Instant::now();
            holder.release().unwrap();
            tokio::time::timeout(PROMPT, wait).await.unwrap().unwrap();
            assert!(released.elapsed() < PROMPT);
            assert!(waiter.is_locked());
        });
    }
}

#[test]
fn an_async_timeout_expires_on_time() {
    let _serial = one_at_a_time();
    let (_dir, path) = scratch();
    let holder = lock_file(&path);
    holder.acquire().unwrap();
    let timeout = Duration::from_millis(200);
    let waiter = lock_file(&path).with_timeout(Some(timeout));
    let started = Instant::now();
    let outcome = current_thread().block_on(waiter.acquire_async());
    let took = started.elapsed();
    match outcome {
        Err(LockError::Timeout { timeout: t, .. }) => assert_eq!(t, timeout),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(took >= timeout, "gave up early, after {took:?}");
    assert!(took < PROMPT, "took {took:?}");
    assert!(!waiter.is_locked());
    let once = lock_file(&path);
    let outcome = current_thread().block_on(once.acquire_with_async(Mode::Shared, TRY_ONCE));
    assert!(matches!(outcome, Err(LockError::Timeout { timeout, .. }) if timeout.is_zero()));
}

/// Cancelling a waiting acquire by dropping it: the handle is idle at once,
/// the lock is not taken later, and the wait's timer is gone.
#[test]
fn dropping_a_waiting_acquire_cancels_it() {
    let _serial = one_at_a_time();
    let (_dir, path) = scratch();
    let holder = lock_file(&path);
    holder.acquire().unwrap();
    let timers_before = posix_timers();
    let rt = current_thread();
    for timeout in [None, Some(Duration::from_secs(600))] {
        let waiter = lock_file(&path).with_timeout(timeout);
        rt.block_on(async {
            let mut wait = std::pin::pin!(waiter.acquire_async());
            assert!(futures_poll_once(wait.as_mut()).await.is_none());
            // Cancel only once the helper blocks in the kernel, so that the
            // drop has to interrupt it.
            wait_for_a_waiter(&path).await;
            assert!(posix_timers() > timers_before || timeout.is_none());
        }); // the future is dropped here, while its thread waits
        assert!(!has_waiter(&path), "the cancelled wait goes on");
        assert!(!waiter.is_locked());
        assert_eq!(posix_timers(), timers_before, "a wait's timer outlived it");
        holder.release().unwrap();
        // Nobody took it behind our back.
        assert!(is_free(&path));
        // The handle can acquire again.
        rt.block_on(waiter.acquire_async()).unwrap();
        waiter.release().unwrap();
        holder.acquire().unwrap();
    }
    // Cancelling by a runtime timeout works the same.
    let waiter = lock_file(&path);
    let outcome = rt.block_on(async {
        tokio::time::timeout(Duration::from_millis(50), waiter.acquire_async()).await
    });
    assert!(outcome.is_err(), "expected the runtime's timeout");
    assert!(!has_waiter(&path), "the cancelled wait goes on");
    assert_eq!(posix_timers(), timers_before, "a wait's timer outlived it");
    holder.release().unwrap();
    assert!(is_free(&path));
    assert!(!waiter.is_locked());
}

/// Release and cancel at the same moment, many times: whichever wins, once
/// the future is dropped nobody holds the lock.
#[test]
fn a_cancel_racing_a_release_never_leaves_the_lock_held() {
    let _serial = one_at_a_time();
    let (_dir, path) = scratch();
    let rt = current_thread();
    let holder = lock_file(&path);
    for round in 0..300 {
        holder.acquire().unwrap();
        let waiter = lock_file(&path);
        let mut wait = Box::pin(waiter.acquire_async());
        assert!(rt.block_on(futures_poll_once(wait.as_mut())).is_none());
        std::thread::scope(|s| {
            s.spawn(|| holder.release().unwrap());
            if round % 2 == 0 {
                // Give the helper a chance to get it first, without sleeping.
                std::thread::yield_now();
            }
            drop(wait); // cancel, racing the release
        });
        assert!(!waiter.is_locked());
        assert!(is_free(&path), "round {round}: the lock stayed held");
    }
}

/// A handle that got the lock through a helper thread is its only owner once
/// the acquire completes: dropping it releases the lock at once.
#[test]
fn dropping_a_handle_after_a_waited_acquire_releases_at_once() {
    let _serial = one_at_a_time();
    let (_dir, path) = scratch();
    let rt = current_thread();
    let holder = lock_file(&path);
    for round in 0..100 {
        holder.acquire().unwrap();
        let waiter = lock_file(&path);
        rt.block_on(async {
            let mut wait = std::pin::pin!(waiter.acquire_async());
            assert!(futures_poll_once(wait.as_mut()).await.is_none());
            holder.release().unwrap();
            tokio::time::timeout(PROMPT, wait).await.unwrap().unwrap();
        });
        drop(waiter);
        assert!(
            is_free(&path),
            "round {round}: the dropped handle still held it"
        );
    }
}

/// 64 tasks on 2 runtime threads, each with its own handle, increment one
/// counter file under the lock: no update may be lost.
#[test]
fn sixty_four_tasks_on_two_threads_lose_no_update() {
    let _serial = one_at_a_time();
    const TASKS: usize = 64;
    const STEPS: usize = 20;
    let (dir, path) = scratch();
    let data = dir.path().join("counter");
    fs::write(&data, "0").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..TASKS {
            let (path, data) = (path.clone(), data.clone());
            tasks.push(tokio::spawn(async move {
                let lock = lock_file(path);
                for _ in 0..STEPS {
                    let _guard = lock.lock_async().await.unwrap();
                    let n: usize = fs::read_to_string(&data).unwrap().parse().unwrap();
                    tokio::task::yield_now().await; // let others try meanwhile
                    fs::write(&data, (n + 1).to_string()).unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
    assert_eq!(
        fs::read_to_string(&data).unwrap(),
        (TASKS * STEPS).to_string()
    );
}

/// Where the waiting thread cannot use the timer signal (here: it blocks it,
/// as a thread taking signals with sigwait would), the wait polls, and a
/// drop still cancels it promptly.
#[test]
fn a_polling_wait_is_cancelled_too() {
    let _serial = one_at_a_time();
    let (_dir, path) = scratch();
    let holder = lock_file(&path);
    holder.acquire().unwrap();
    let timers_before = posix_timers();
    let probe = path.clone();
    // The helper thread inherits the signal mask of the thread that spawns it.
    std::thread::spawn(move || {
        block_wake_signal();
        let rt = current_thread();
        let waiter = lock_file(&probe).with_timeout(Some(Duration::from_secs(600)));
        rt.block_on(async {
            let mut wait = std::pin::pin!(waiter.acquire_async());
            assert!(futures_poll_once(wait.as_mut()).await.is_none());
        });
        assert!(!waiter.is_locked());
    })
    .join()
    .unwrap();
    assert_eq!(posix_timers(), timers_before, "a polling wait made a timer");
    holder.release().unwrap();
    assert!(is_free(&path));
}

/// A panic in an `Opener` on the helper thread reaches the task that awaits
/// the acquire, instead of leaving it pending forever.
#[test]
fn a_panicking_opener_on_the_helper_thread_reaches_the_caller() {
    let _serial = one_at_a_time();
    struct Fussy(PathBuf);
    impl Opener for Fussy {
        fn open(&self) -> Result<fs::File, OpenError> {
            Ok(fs::OpenOptions::new().read(true).open(&self.0)?)
        }
        fn identify(&self) -> std::io::Result<Option<FileId>> {
            panic!("the opener cannot identify {}", self.0.display());
        }
    }
    let (_dir, path) = scratch();
    let holder = lock_file(&path);
    holder.acquire().unwrap();
    let waiter = Lock::with_opener("fussy", Fussy(path.clone()));
    let rt = current_thread();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async { tokio::time::timeout(PROMPT, waiter.acquire_async()).await })
    }));
    let payload = caught.expect_err("the opener's panic should reach the caller");
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(message.contains("cannot identify"), "{message:?}");
    assert!(!waiter.is_locked());
}

#[cfg(unix)]
fn block_wake_signal() {
    // SAFETY: builds a signal set on the stack and blocks one signal in the
    // calling thread; no memory is shared.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGRTMAX() - 1);
        assert_eq!(
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()),
            0
        );
    }
}

/// Whether the kernel shows someone blocked on `path`'s lock.
fn has_waiter(path: &Path) -> bool {
    !locket::waiters(path).unwrap().is_empty()
}

/// Waits until the kernel shows someone blocked on `path`'s lock.
async fn wait_for_a_waiter(path: &Path) {
    let started = Instant::now();
    while !has_waiter(path) {
        assert!(started.elapsed() < PROMPT, "nobody started waiting");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Polls `future` once: `Some(output)` if it completed, `None` if pending.
async fn futures_poll_once<F: Future + Unpin>(mut future: F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut future).poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
}
