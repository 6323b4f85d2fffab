//! One process's presence in the cluster: its client, its lease kept alive
//! in the background, the runtime all of it runs on, and the judgement of
//! when the lease, and so every lock on it, is lost.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, sleep_until, timeout_at};
use tonic::Code;

use crate::error::Error;

/// The shortest bound on one attempt of a call, however little of the
/// caller's timeout is left: a zero timeout still gets one real try.
const MIN_ATTEMPT: Duration = Duration::from_secs(2);
/// The longest one attempt may take before it is abandoned and retried on
/// the next endpoint. Every call is idempotent or harmless to repeat (a
/// second lease granted by a repeated grant expires unused), and a member
/// that just lost its leader can hold a call until a new one is elected.
const MAX_ATTEMPT: Duration = Duration::from_secs(2);
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
    pub(crate) inner: Arc<Inner>,
}

/// Owns the runtime, and closes the session when dropped.
pub(crate) struct Inner {
    runtime: Option<Runtime>,
    pub(crate) shared: Arc<Shared>,
}

/// What the session's tasks share with its handles.
pub(crate) struct Shared {
    handle: Handle,
    /// One client per endpoint, connected when first used. etcd-client's
    /// own balancing over several endpoints fails whole when one is down,
    /// so calls stick to one endpoint and move to the next on a passing
    /// failure, as etcd's Go client does.
    urls: Vec<String>,
    options: ConnectOptions,
    clients: Mutex<Vec<Option<Client>>>,
    current: AtomicUsize,
    /// The endpoints, for error messages.
    pub(crate) endpoints: String,
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

/// One lease, and whether it still holds.
pub(crate) struct Lease {
    pub(crate) id: i64,
    ttl: Duration,
    /// The lease is surely alive until this instant: the time a keep-alive
    /// that etcd answered was sent, plus the TTL it granted.
    valid_until: Mutex<Instant>,
    lost: AtomicBool,
    lost_tx: watch::Sender<bool>,
    /// Locks held on this lease now.
    held: AtomicUsize,
    lost_locks: Arc<AtomicU64>,
}

impl Lease {
    fn until(&self) -> MutexGuard<'_, Instant> {
        self.valid_until.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the lease is alive now. Past its last known expiry it is
    /// judged lost here, without waiting for word from the cluster: a
    /// process that was paused learns at once that its locks are gone.
    pub(crate) fn valid(&self) -> bool {
        if self.lost.load(Ordering::Acquire) {
            return false;
        }
        if Instant::now() >= *self.until() {
            self.mark_lost("no keep-alive was answered within the lease's TTL");
            return false;
        }
        true
    }

    fn extend(&self, until: Instant) {
        let mut at = self.until();
        if until > *at {
            *at = until;
        }
    }

    pub(crate) fn mark_lost(&self, why: &str) {
        if !self.lost.swap(true, Ordering::AcqRel) {
            let held = self.held.load(Ordering::Acquire);
            self.lost_locks.fetch_add(held as u64, Ordering::Relaxed);
            tracing::warn!(
                lease = format_args!("{:x}", self.id),
                locks = held,
                "etcd lease lost, and with it every lock held on it: {why}"
            );
            self.lost_tx.send_replace(true);
        }
    }

    /// Ends the lease on purpose (the session closed): its locks are no
    /// longer held, and that is not counted or reported as a loss.
    fn end(&self) {
        if !self.lost.swap(true, Ordering::AcqRel) {
            self.lost_tx.send_replace(true);
        }
    }

    /// Resolves when the lease is judged lost.
    pub(crate) async fn lost(&self) {
        let mut rx = self.lost_tx.subscribe();
        // A keep-alive may move the expiry while this waits: look again.
        while self.valid() {
            let expiry = *self.until();
            tokio::select! {
                _ = rx.wait_for(|lost| *lost) => return,
                () = sleep_until(expiry) => {}
            }
        }
    }

    pub(crate) fn count_hold(&self) {
        self.held.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn forget_hold(&self) {
        let _ = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }
}

/// How a failed call is to be treated.
enum Failure {
    /// Passing: no leader, a leader change, a member gone. Retry.
    Passing(String),
    /// The credentials were refused.
    Auth(String),
    /// Anything else: report it.
    Other(String),
}

fn classify(e: &etcd_client::Error) -> Failure {
    use etcd_client::Error as E;
    match e {
        E::GRpcStatus(s) => {
            let message = s.message().to_owned();
            match s.code() {
                Code::Unavailable
                | Code::DeadlineExceeded
                | Code::Aborted
                | Code::ResourceExhausted
                | Code::Cancelled => Failure::Passing(message),
                Code::Unauthenticated | Code::PermissionDenied => Failure::Auth(message),
                Code::InvalidArgument | Code::FailedPrecondition
                    if message.contains("authentication")
                        || message.contains("user name")
                        || message.contains("auth token") =>
                {
                    Failure::Auth(message)
                }
                Code::Unknown | Code::Internal
                    if message.contains("leader")
                        || message.contains("transport")
                        || message.contains("connection")
                        || message.contains("timed out") =>
                {
                    Failure::Passing(message)
                }
                _ => Failure::Other(message),
            }
        }
        E::TransportError(t) => Failure::Passing(full_message(t)),
        E::IoError(io) => Failure::Passing(io.to_string()),
        E::LeaseKeepAliveError(m) | E::WatchError(m) => Failure::Passing(m.clone()),
        other => Failure::Other(full_message(other)),
    }
}

/// An error's message with its sources, which is where tonic says why.
fn full_message(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

impl Shared {
    /// Runs `f` against the cluster, retrying passing failures with backoff
    /// until `deadline` (forever when `None`). Every attempt gets at least
    /// [`MIN_ATTEMPT`]; out of time, the error is [`Error::Unavailable`].
    pub(crate) async fn call<T, F, Fut>(
        &self,
        deadline: Option<Instant>,
        mut f: F,
    ) -> Result<T, Error>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut backoff = Duration::from_millis(25);
        loop {
            let now = Instant::now();
            let attempt_end = match deadline {
                Some(d) => {
                    now + d
                        .saturating_duration_since(now)
                        .clamp(MIN_ATTEMPT, MAX_ATTEMPT)
                }
                None => now + MAX_ATTEMPT,
            };
            let (at, client) = self.client().await;
            let attempt = async {
                match client {
                    Ok(c) => f(c).await,
                    Err(e) => Err(e),
                }
            };
            let detail = match timeout_at(attempt_end, attempt).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) => match classify(&e) {
                    Failure::Passing(detail) => {
                        self.move_on(at);
                        detail
                    }
                    Failure::Auth(detail) => {
                        return Err(Error::Auth {
                            endpoints: self.endpoints.clone(),
                            detail,
                        });
                    }
                    Failure::Other(detail) => {
                        return Err(Error::Etcd {
                            endpoints: self.endpoints.clone(),
                            detail,
                        });
                    }
                },
                Err(_) => {
                    self.move_on(at);
                    "no answer in time".to_owned()
                }
            };
            let retry_at = Instant::now() + backoff;
            if deadline.is_some_and(|d| retry_at >= d) {
                return Err(Error::Unavailable {
                    endpoints: self.endpoints.clone(),
                    detail,
                });
            }
            tracing::debug!(%detail, "etcd call failed; retrying");
            tokio::time::sleep_until(retry_at).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
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
            .call(
                deadline,
                |mut c| async move { c.lease_grant(ttl, None).await },
            )
            .await?;
        let granted_ttl = Duration::from_secs(u64::try_from(granted.ttl()).unwrap_or(1).max(1));
        let lease = Arc::new(Lease {
            id: granted.id(),
            ttl: granted_ttl,
            valid_until: Mutex::new(sent + granted_ttl),
            lost: AtomicBool::new(false),
            lost_tx: watch::Sender::new(false),
            held: AtomicUsize::new(0),
            lost_locks: Arc::clone(&self.lost_locks),
        });
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
        self.handle
            .spawn(keep_alive(Arc::clone(self), Arc::clone(&lease)));
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
        self.call(bound, |mut c| async move { c.lease_revoke(id).await })
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

    /// The client of the endpoint in use, and its index; connecting it
    /// first if need be.
    pub(crate) async fn client(&self) -> (usize, Result<Client, etcd_client::Error>) {
        let at = self.current.load(Ordering::Acquire) % self.urls.len();
        let cached = self.clients.lock().unwrap_or_else(|e| e.into_inner())[at].clone();
        if let Some(client) = cached {
            return (at, Ok(client));
        }
        let made = Client::connect([&self.urls[at]], Some(self.options.clone())).await;
        if let Ok(client) = &made {
            self.clients.lock().unwrap_or_else(|e| e.into_inner())[at] = Some(client.clone());
        }
        (at, made)
    }

    /// Moves calls from endpoint `at`, which just failed, to the next one
    /// (unless another call moved them already).
    pub(crate) fn move_on(&self, at: usize) {
        if self.urls.len() > 1 {
            let next = (at + 1) % self.urls.len();
            if self
                .current
                .compare_exchange(at, next, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                tracing::debug!(from = %self.urls[at], to = %self.urls[next], "etcd endpoint failed; moving on");
            }
        }
    }
}

/// Keeps `lease` alive, a third of its TTL apart, until it is lost or the
/// session closes; judges it lost when no keep-alive was answered within
/// the TTL, or when etcd says it is gone.
async fn keep_alive(shared: Arc<Shared>, lease: Arc<Lease>) {
    let mut closed = shared.closed.subscribe();
    let mut stream = None;
    let mut endpoint = 0;
    let mut next = Instant::now() + lease.ttl / 3;
    loop {
        let expiry = *lease.until();
        tokio::select! {
            () = sleep_until(next.min(expiry)) => {}
            () = lease.lost() => return,
            _ = closed.wait_for(|c| *c) => return,
        }
        if !lease.valid() {
            return;
        }
        let sent = Instant::now();
        let round = async {
            match &mut stream {
                None => {
                    // Opening the stream sends one keep-alive and reads its answer.
                    let (at, client) = shared.client().await;
                    endpoint = at;
                    let opened = client?.lease_keep_alive(lease.id).await?;
                    stream = Some(opened);
                    Ok(Some(lease.ttl))
                }
                Some((keeper, answers)) => {
                    keeper.keep_alive().await?;
                    Ok::<_, etcd_client::Error>(
                        answers
                            .message()
                            .await?
                            .map(|a| Duration::from_secs(u64::try_from(a.ttl()).unwrap_or(0))),
                    )
                }
            }
        };
        let bound = (*lease.until()).min(sent + lease.ttl / 3);
        match timeout_at(bound, round).await {
            Ok(Ok(Some(ttl))) if !ttl.is_zero() => {
                lease.extend(sent + ttl);
                next = sent + lease.ttl / 3;
            }
            Ok(Ok(Some(_))) => {
                lease.mark_lost("etcd says the lease has expired");
                return;
            }
            Ok(Err(etcd_client::Error::LeaseKeepAliveError(m))) if m.contains("not found") => {
                lease.mark_lost("etcd says the lease has expired");
                return;
            }
            failed => {
                if let Ok(Err(e)) = &failed {
                    tracing::debug!(
                        lease = format_args!("{:x}", lease.id),
                        "keep-alive failed: {e}"
                    );
                }
                stream = None;
                shared.move_on(endpoint);
                next = Instant::now() + Duration::from_millis(200);
            }
        }
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
        let clients = Mutex::new(vec![None; urls.len()]);
        let shared = Arc::new(Shared {
            handle,
            urls,
            options,
            clients,
            current: AtomicUsize::new(0),
            endpoints,
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
        &self.inner.shared.endpoints
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("endpoints", &self.inner.shared.endpoints)
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
