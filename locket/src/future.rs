//! Async acquires: the wait happens on a helper thread, so an executor thread
//! is never blocked, and dropping the future cancels the wait.

use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::LockError;
use crate::lock_core::Core;
use crate::mode::Mode;
use crate::wait::{Cancel, Wait};

/// What the helper thread reports: the acquire's outcome, or its panic (from
/// an [`Opener`](crate::Opener)), which the future passes on to its caller.
type Report = thread::Result<Result<u64, LockError>>;

/// An acquire in progress; resolves to the hold's generation.
///
/// The first poll tries once on the caller's thread, which is all an
/// uncontended acquire needs (it opens the lock file the first time, and
/// stats its path; neither waits for the lock). If the lock is held elsewhere and the timeout
/// allows waiting, a helper thread waits in the kernel, as the blocking
/// acquire does, and wakes the task when it is done.
///
/// Dropping the future before it resolves cancels the wait: the helper is
/// interrupted, and if it got the lock meanwhile it releases it. `drop`
/// returns only once the helper is done with the handle (about a millisecond
/// at most on Linux, one backoff step of at most 5 ms elsewhere), so after the
/// drop the handle is idle and holds nothing.
///
/// A future that is leaked (`mem::forget`) instead of dropped is never
/// cancelled: its helper goes on waiting, the handle stays busy
/// (`AlreadyLocked`) until the wait ends, and a lock it then gets stays held
/// until the handle releases it or is dropped.
pub(crate) struct Acquire<'a> {
    core: &'a Arc<Core>,
    mode: Mode,
    timeout: Option<Duration>,
    started: Option<Instant>,
    waiter: Option<Arc<Waiter>>,
    done: bool,
}

/// What the future and its helper thread share.
#[derive(Default)]
struct Waiter {
    cancel: Cancel,
    slot: Mutex<Slot>,
    finished: Condvar,
}

#[derive(Default)]
struct Slot {
    /// The helper's report, until the future takes it.
    result: Option<Report>,
    /// The task to wake with the outcome.
    waker: Option<Waker>,
    /// The future was dropped: nobody will take the outcome.
    abandoned: bool,
    /// The helper is done with the handle.
    finished: bool,
}

impl Waiter {
    fn slot(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The helper thread's work. It lets go of `core` before it reports, so
    /// that once the future completes (or its drop returns) the handle is the
    /// only owner again, and dropping it closes the file at once.
    fn run(&self, core: Arc<Core>, mode: Mode, wait: Wait, timeout: Option<Duration>) {
        // An `Opener` may panic. Catch it, so that the future and its drop
        // always hear back, and let the future re-raise it for its caller.
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
            core.acquire(mode, wait, timeout, Some(&self.cancel))
        }));
        let mut slot = self.slot();
        let waker = if slot.abandoned {
            if let Ok(Ok(generation)) = outcome {
                // Got it just as the future was dropped: nobody owns this hold.
                let _ = core.release_if(Some(generation));
            }
            None
        } else {
            slot.result = Some(outcome);
            slot.waker.take()
        };
        drop(core);
        slot.finished = true;
        self.finished.notify_all();
        drop(slot);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<'a> Acquire<'a> {
    /// An acquire in `mode` of the handle whose core is `core`.
    pub(crate) fn new(core: &'a Arc<Core>, mode: Mode, timeout: Option<Duration>) -> Self {
        Self {
            core,
            mode,
            timeout,
            started: None,
            waiter: None,
            done: false,
        }
    }

    fn finish(&mut self, outcome: Result<u64, LockError>) -> Poll<Result<u64, LockError>> {
        self.done = true;
        let started = self.started.unwrap_or_else(Instant::now);
        self.core
            .trace(self.mode, self.timeout, started, &outcome, true);
        Poll::Ready(outcome)
    }
}

impl Future for Acquire<'_> {
    type Output = Result<u64, LockError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        assert!(
            !this.done,
            "locket: an acquire future was polled after it completed"
        );
        if let Some(waiter) = &this.waiter {
            let mut slot = waiter.slot();
            if let Some(report) = slot.result.take() {
                drop(slot);
                this.waiter = None;
                match report {
                    Ok(outcome) => return this.finish(outcome),
                    Err(payload) => {
                        this.done = true;
                        panic::resume_unwind(payload)
                    }
                }
            }
            if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                slot.waker = Some(cx.waker().clone());
            }
            return Poll::Pending;
        }
        let started = *this.started.get_or_insert_with(Instant::now);
        let wait = Wait::new(this.timeout, started);
        let core = this.core;
        match core.acquire(this.mode, Wait::Once, this.timeout, None) {
            Err(LockError::Timeout { .. }) if !matches!(wait, Wait::Once) => {}
            outcome => return this.finish(outcome),
        }
        // Held elsewhere: wait on a helper thread.
        let waiter = Arc::new(Waiter::default());
        waiter.slot().waker = Some(cx.waker().clone());
        let (shared, core) = (Arc::clone(&waiter), Arc::clone(core));
        let (mode, timeout) = (this.mode, this.timeout);
        let spawned = thread::Builder::new()
            .name("locket-wait".to_owned())
            .spawn(move || shared.run(core, mode, wait, timeout));
        match spawned {
            Ok(_) => {
                this.waiter = Some(waiter);
                Poll::Pending
            }
            Err(source) => this.finish(Err(LockError::Io {
                path: this.core.path().to_path_buf(),
                source,
            })),
        }
    }
}

impl Drop for Acquire<'_> {
    fn drop(&mut self) {
        let Some(waiter) = self.waiter.take() else {
            return;
        };
        let mut slot = waiter.slot();
        slot.abandoned = true;
        if let Some(Ok(Ok(generation))) = slot.result.take() {
            // The helper got the lock, but the future never handed it over.
            let _ = self.core.release_if(Some(generation));
        }
        if slot.finished {
            return;
        }
        drop(slot);
        waiter.cancel.cancel();
        let mut slot = waiter.slot();
        while !slot.finished {
            slot = waiter
                .finished
                .wait(slot)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}
