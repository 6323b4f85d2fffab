//! A session's lease: whether it still holds, judged locally from the last
//! keep-alive etcd answered, and the task that keeps it alive.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout_at};

use crate::calls::Endpoints;

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

    /// A lease etcd granted: `id`, with `ttl`, surely alive until
    /// `valid_until`; the locks lost with it are counted in `lost_locks`.
    pub(crate) fn new(
        id: i64,
        ttl: Duration,
        valid_until: Instant,
        lost_locks: Arc<AtomicU64>,
    ) -> Self {
        Self {
            id,
            ttl,
            valid_until: Mutex::new(valid_until),
            lost: AtomicBool::new(false),
            lost_tx: watch::Sender::new(false),
            held: AtomicUsize::new(0),
            lost_locks,
        }
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
    pub(crate) fn end(&self) {
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

/// Keeps `lease` alive, a third of its TTL apart, until it is lost or the
/// session closes; judges it lost when no keep-alive was answered within
/// the TTL, or when etcd says it is gone.
pub(crate) async fn keep_alive(
    endpoints: Arc<Endpoints>,
    mut closed: watch::Receiver<bool>,
    lease: Arc<Lease>,
) {
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
                    let (at, client) = endpoints.client().await;
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
                endpoints.move_on(endpoint);
                next = Instant::now() + Duration::from_millis(200);
            }
        }
    }
}
