//! One process's presence in the cluster over its life: started with a
//! first lease that proves the cluster and the credentials, its current
//! lease (granted here, kept alive by `lease.rs`), the runtime its work
//! runs on and the work still pending there, and its close, which revokes
//! the lease. Calls to the cluster go through `calls.rs`.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::ConnectOptions;
use tokio::runtime::{Handle, Runtime};
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, timeout_at};

use crate::calls::{Endpoints, MAX_ATTEMPT};
use crate::error::Error;
use crate::lease::{Lease, keep_alive};

/// How long closing a session waits for its releases and its lease's revoke.
const CLOSE_BOUND: Duration = Duration::from_secs(5);

/// A connection to an etcd cluster with one lease, kept alive in the
/// background, that every lock made from it is attached to.
///
/// Cloning is cheap and shares the connection and the lease. When the last
/// clone and the last [`Lock`](crate::Lock) made from it are dropped, the
/// session waits (a few seconds at most) for its pending releases and
/// revokes its lease, so every lock it still held is freed at once rather
/// than when the lease would expire.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

/// Owns the runtime, and closes the session when dropped.
struct Inner {
    runtime: Option<Runtime>,
    shared: Arc<Shared>,
}

/// What the session's tasks share with its handles.
pub(crate) struct Shared {
    handle: Handle,
    /// The cluster's endpoints, which every call goes through.
    pub(crate) calls: Arc<Endpoints>,
    /// The lease TTL asked for, in seconds.
    ttl: i64,
    lease: Mutex<Option<Arc<Lease>>>,
    /// One grant at a time.
    granting: tokio::sync::Mutex<()>,
    /// Locks lost with their lease, over the session's life.
    lost_locks: Arc<AtomicU64>,
    next_handle: AtomicU64,
    /// `host=NAME pid=N`, stored in every key this session makes.
    pub(crate) holder: String,
    /// Releases handed to the runtime and not yet done.
    pending: AtomicUsize,
    idle: Notify,
    closed: watch::Sender<bool>,
}

impl Shared {
    /// The endpoints, for error messages.
    pub(crate) fn endpoints(&self) -> &str {
        &self.calls.shown
    }

    /// The lease to attach new keys to: the current one while it holds, or
    /// a new one.
    pub(crate) async fn lease(
        self: &Arc<Self>,
        deadline: Option<Instant>,
    ) -> Result<Arc<Lease>, Error> {
        let _one = self.granting.lock().await;
        if *self.closed.borrow() {
            return Err(Error::Closed);
        }
        let old = self.current_lease();
        if let Some(lease) = &old
            && lease.valid()
        {
            return Ok(Arc::clone(lease));
        }
        let ttl = self.ttl;
        let sent = Instant::now();
        let granted = self
            .calls
            .call(
                deadline,
                |mut c| async move { c.lease_grant(ttl, None).await },
            )
            .await?;
        let granted_ttl = Duration::from_secs(u64::try_from(granted.ttl()).unwrap_or(1).max(1));
        let lease = Arc::new(Lease::new(
            granted.id(),
            granted_ttl,
            sent + granted_ttl,
            Arc::clone(&self.lost_locks),
        ));
        tracing::debug!(lease = format_args!("{:x}", lease.id), ttl = ?granted_ttl, "etcd lease granted");
        *self.lease.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&lease));
        // Stored first, checked second: a close that began before the
        // store sees it here, and one that begins after finds the new lease
        // and revokes it itself.
        if *self.closed.borrow() {
            lease.end();
            let _ = self.revoke(lease.id).await;
            return Err(Error::Closed);
        }
        self.handle.spawn(keep_alive(
            Arc::clone(&self.calls),
            self.closed.subscribe(),
            Arc::clone(&lease),
        ));
        if let Some(old) = old {
            // Lost to us; if etcd still has it, its keys would stand in the
            // queue until it expired.
            let id = old.id;
            self.in_background(move |shared| async move {
                let _ = shared.revoke(id).await;
            });
        }
        Ok(lease)
    }

    /// Revokes the lease `id`, which deletes every key on it, trying for
    /// [`CLOSE_BOUND`] at most.
    async fn revoke(&self, id: i64) -> Result<(), Error> {
        let bound = Some(Instant::now() + CLOSE_BOUND);
        self.calls
            .call(bound, |mut c| async move { c.lease_revoke(id).await })
            .await
            .map(drop)
    }

    /// Resolves once the session is closing.
    pub(crate) async fn closing(&self) {
        let mut closed = self.closed.subscribe();
        let _ = closed.wait_for(|c| *c).await;
    }

    fn current_lease(&self) -> Option<Arc<Lease>> {
        self.lease.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Runs `work` on the runtime, counted as pending until it is done, so
    /// that closing waits for it.
    pub(crate) fn in_background<F, Fut>(self: &Arc<Self>, work: F)
    where
        F: FnOnce(Arc<Shared>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.pending.fetch_add(1, Ordering::AcqRel);
        let fut = work(Arc::clone(self));
        let shared = Arc::clone(self);
        self.handle.spawn(async move {
            fut.await;
            if shared.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
                shared.idle.notify_waiters();
            }
        });
    }

    /// Deletes `key` in the background (a release that must not block).
    pub(crate) fn delete_later(self: &Arc<Self>, key: String) {
        self.in_background(move |shared| async move {
            let bound = Some(Instant::now() + MAX_ATTEMPT * 2);
            let k = key.clone();
            if let Err(e) = shared
                .calls
                .call(bound, |mut c| {
                    let k = k.clone();
                    async move { c.delete(k, None).await }
                })
                .await
            {
                tracing::warn!(%key, "could not delete an etcd lock key (its lease will free it): {e}");
            }
        });
    }

    pub(crate) fn next_handle(&self) -> u64 {
        self.next_handle.fetch_add(1, Ordering::Relaxed)
    }

    /// Runs `fut` on the session's runtime and waits for it on this thread.
    /// Works from any thread, inside another runtime too (it blocks that
    /// thread, as a system call would).
    pub(crate) fn block_on<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, Error> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().map_err(|_| Error::Closed)
    }

    /// Runs `fut` on the session's runtime; the returned future awaits it
    /// from any executor.
    pub(crate) fn spawn<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> tokio::task::JoinHandle<T> {
        self.handle.spawn(fut)
    }
}

impl Session {
    pub(crate) fn start(
        urls: Vec<String>,
        options: ConnectOptions,
        endpoints: String,
        ttl: i64,
        start_bound: Duration,
        check_access: Vec<String>,
    ) -> Result<Self, Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("locket-etcd")
            .enable_all()
            .build()
            .map_err(|e| Error::Etcd {
                endpoints: endpoints.clone(),
                detail: format!("cannot start the client's runtime: {e}"),
            })?;
        let handle = runtime.handle().clone();
        let shared = Arc::new(Shared {
            handle,
            calls: Arc::new(Endpoints::new(urls, options, endpoints)),
            ttl,
            lease: Mutex::new(None),
            granting: tokio::sync::Mutex::new(()),
            lost_locks: Arc::new(AtomicU64::new(0)),
            next_handle: AtomicU64::new(1),
            holder: format!("host={} pid={}", host_name(), std::process::id()),
            pending: AtomicUsize::new(0),
            idle: Notify::new(),
            closed: watch::Sender::new(false),
        });
        let session = Self {
            inner: Arc::new(Inner {
                runtime: Some(runtime),
                shared,
            }),
        };
        // The first lease: proves that the cluster answers, with quorum,
        // and that the credentials are good, before any lock is asked for.
        let shared = Arc::clone(&session.inner.shared);
        let deadline = Instant::now() + start_bound;
        session.inner.shared.block_on(async move {
            shared.lease(Some(deadline)).await?;
            for prefix in check_access {
                // etcd grants leases to anyone; reading the keys shows
                // whether these credentials may use them.
                let options = etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_count_only();
                shared
                    .calls
                    .call(Some(deadline), |mut c| {
                        let (prefix, options) = (prefix.clone(), options.clone());
                        async move { c.get(prefix, Some(options)).await }
                    })
                    .await?;
            }
            Ok::<(), Error>(())
        })??;
        Ok(session)
    }

    /// How many locks this session lost with their lease, over its life.
    #[must_use]
    pub fn lost_locks(&self) -> u64 {
        self.inner.shared.lost_locks.load(Ordering::Relaxed)
    }

    /// The id of the current lease, while it holds.
    #[must_use]
    pub fn lease_id(&self) -> Option<i64> {
        self.inner
            .shared
            .current_lease()
            .filter(|l| l.valid())
            .map(|l| l.id)
    }

    /// The cluster's endpoints, as given.
    #[must_use]
    pub fn endpoints(&self) -> &str {
        self.inner.shared.endpoints()
    }
}

/// What the handles made from a session use of it.
impl Session {
    /// The state the session's tasks share, for work handed to its runtime.
    pub(crate) fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.inner.shared)
    }

    /// A number for a new handle, unique within the session.
    pub(crate) fn next_handle(&self) -> u64 {
        self.inner.shared.next_handle()
    }

    /// Runs `fut` on the session's runtime and waits for it on this thread.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the runtime is gone.
    pub(crate) fn block_on<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, Error> {
        self.inner.shared.block_on(fut)
    }

    /// Runs `fut` on the session's runtime; the returned future awaits it
    /// from any executor.
    pub(crate) fn spawn<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> tokio::task::JoinHandle<T> {
        self.inner.shared.spawn(fut)
    }

    /// Deletes `key` in the background (a release that must not block).
    pub(crate) fn delete_later(&self, key: String) {
        self.inner.shared.delete_later(key);
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("endpoints", &self.endpoints())
            .field("lease", &self.lease_id().map(|id| format!("{id:x}")))
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Waits (a few seconds at most) for the releases handed to the
    /// runtime, stops the keep-alive and revokes the lease, which frees
    /// every key still on it. Only the first call does anything.
    async fn close(self: Arc<Self>) {
        if self.closed.send_replace(true) {
            return;
        }
        let deadline = Instant::now() + CLOSE_BOUND;
        while self.pending.load(Ordering::Acquire) > 0 {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.pending.load(Ordering::Acquire) == 0 {
                break;
            }
            if timeout_at(deadline, idle).await.is_err() {
                break;
            }
        }
        if let Some(lease) = self.current_lease()
            && lease.valid()
        {
            lease.end();
            let id = lease.id;
            if let Err(e) = self.revoke(id).await
                && !e.to_string().contains("not found")
            {
                tracing::warn!(
                    lease = format_args!("{id:x}"),
                    "cannot revoke the lease; its locks are freed when it expires: {e}"
                );
            }
        }
    }
}

impl Session {
    /// Ends the session now: waits (a few seconds at most) for pending
    /// releases, then revokes the lease, so every lock still held on it, by
    /// any handle or clone, is freed at once rather than when the lease
    /// would expire. Those handles hold nothing afterwards, and further
    /// acquires fail with [`Error::Closed`]. Dropping the last clone and
    /// handle does the same; this is for a process that is about to exit
    /// without dropping them. Calling it again does nothing.
    pub fn close(&self) {
        let shared = Arc::clone(&self.inner.shared);
        let _ = self.inner.shared.block_on(shared.close());
    }

    /// Whether [`close`](Self::close) has been called.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        *self.inner.shared.closed.borrow()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let shared = Arc::clone(&self.shared);
        let _ = self.shared.block_on(shared.close());
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// This machine's host name, for the holder's record.
#[cfg(not(unix))]
fn host_name() -> String {
    std::env::var("COMPUTERNAME").unwrap_or_else(|_| "unknown".to_owned())
}

/// This machine's host name, for the holder's record.
#[cfg(unix)]
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the pointer and length describe `buf`, which outlives the
    // call; gethostname writes at most `len` bytes into it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".to_owned();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]);
    // The record is space-separated words.
    name.split_whitespace()
        .next()
        .unwrap_or("unknown")
        .to_owned()
}
