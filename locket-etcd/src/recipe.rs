//! The lock recipe against etcd (ARCHITECTURE.md, "Locks beyond one
//! machine"): put a key in the lock's queue, wait by watches until no key
//! before it conflicts, re-check, delete.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Compare, CompareOp, EventType, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
    WatchFilterType, WatchOptions,
};
use locket::Mode;
use tokio::time::Instant;

use crate::error::Error;
use crate::lease::Lease;
use crate::session::Shared;

/// A key this process put in a lock's queue, and was granted.
pub(crate) struct Claim {
    pub(crate) key: String,
    /// The key's create revision: the grant's fencing token.
    pub(crate) revision: i64,
    pub(crate) lease: Arc<Lease>,
}

/// The mode recorded in a key's value; etcdctl's empty values are exclusive.
pub(crate) fn mode_of(value: &[u8]) -> Mode {
    let shared =
        std::str::from_utf8(value).is_ok_and(|v| v.split_whitespace().any(|w| w == "mode=shared"));
    if shared {
        Mode::Shared
    } else {
        Mode::Exclusive
    }
}

pub(crate) fn mode_word(mode: Mode) -> &'static str {
    match mode {
        Mode::Shared => "shared",
        Mode::Exclusive => "exclusive",
    }
}

/// Whether `key` is a direct child of `prefix` (not a key of a lock named
/// below this one).
pub(crate) fn direct_child(prefix: &str, key: &[u8]) -> bool {
    key.strip_prefix(prefix.as_bytes())
        .is_some_and(|rest| !rest.is_empty() && !rest.contains(&b'/'))
}

/// Why a wait ended without the lock.
enum Ended {
    /// The deadline passed while holders held the lock.
    TimedOut,
    /// Our key or our lease vanished: start over.
    Vanished,
    Failed(Error),
}

/// Acquires the lock `name` in `mode`, waiting at most `timeout`.
///
/// Every attempt puts a key of its own (`NAME/<lease hex>-<attempt hex>`,
/// the attempt numbered by the session): a background delete of an earlier
/// attempt's key, or a cancelled acquire still running, can then never
/// remove the key of a later one.
pub(crate) async fn acquire(
    shared: Arc<Shared>,
    name: String,
    mode: Mode,
    timeout: Option<Duration>,
) -> Result<Claim, Error> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let prefix = format!("{name}/");
    let value = format!("{} mode={}", shared.holder, mode_word(mode));
    loop {
        let lease = shared.lease(deadline).await?;
        let key = format!("{prefix}{:x}-{:x}", lease.id, shared.next_handle());
        let created = create(&shared, &prefix, &key, &value, lease.id, mode, deadline).await;
        let (revision, first) = match created {
            Ok(created) => created,
            Err(Error::Etcd { detail, .. }) if detail.contains("lease not found") => {
                // etcd let the lease expire before we judged it lost.
                lease.mark_lost("etcd no longer knows the lease");
                continue;
            }
            Err(e) => {
                // The create may have landed before the failure was seen.
                shared.delete_later(key);
                return Err(e);
            }
        };
        tracing::debug!(%key, revision, mode = mode_word(mode), "etcd lock queued");
        let queue = Queue {
            prefix: &prefix,
            key: &key,
            revision,
            mode,
        };
        match wait_turn(&shared, &queue, first, &lease, deadline).await {
            Ok(()) if lease.valid() => {
                lease.count_hold();
                return Ok(Claim {
                    key,
                    revision,
                    lease,
                });
            }
            Ok(()) | Err(Ended::Vanished) => {
                tracing::debug!(%key, "etcd lock key or lease vanished while waiting; starting over");
                shared.delete_later(key);
            }
            Err(Ended::TimedOut) => {
                shared.delete_later(key);
                return Err(Error::Timeout { name, timeout });
            }
            Err(Ended::Failed(e)) => {
                shared.delete_later(key);
                return Err(e);
            }
        }
    }
}

/// Our place in a lock's queue.
struct Queue<'a> {
    prefix: &'a str,
    key: &'a str,
    /// Our key's create revision.
    revision: i64,
    mode: Mode,
}

/// One look at the queue: the revision it was taken at, and every key
/// before ours whose mode conflicts with ours. No key can join that set
/// later (a new key's create revision is after ours), so once each of them
/// is deleted, the lock is ours.
struct Look {
    seen: i64,
    blockers: HashSet<Vec<u8>>,
}

impl Queue<'_> {
    /// The look that `kvs`, the keys under the prefix at revision `seen`,
    /// give.
    fn look(&self, seen: i64, kvs: &[etcd_client::KeyValue]) -> Look {
        let blockers = kvs
            .iter()
            .filter(|kv| {
                kv.create_revision() < self.revision
                    && direct_child(self.prefix, kv.key())
                    && (self.mode == Mode::Exclusive || mode_of(kv.value()) == Mode::Exclusive)
            })
            .map(|kv| kv.key().to_vec())
            .collect();
        Look { seen, blockers }
    }
}

/// Puts `key` if it is not there, and returns its create revision and a
/// first look at the queue, taken in the same transaction: an uncontended
/// acquire is one round trip.
async fn create(
    shared: &Shared,
    prefix: &str,
    key: &str,
    value: &str,
    lease: i64,
    mode: Mode,
    deadline: Option<Instant>,
) -> Result<(i64, Look), Error> {
    let queue = || TxnOp::get(prefix, Some(GetOptions::new().with_prefix()));
    let txn = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([
            TxnOp::put(key, value, Some(PutOptions::new().with_lease(lease))),
            queue(),
        ])
        .or_else([TxnOp::get(key, None), queue()]);
    let answer = shared
        .calls
        .call(deadline, |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await?;
    let seen = answer
        .header()
        .map(etcd_client::ResponseHeader::revision)
        .ok_or_else(|| malformed(shared, "a transaction answer without a header"))?;
    let gets: Vec<_> = answer
        .op_responses()
        .into_iter()
        .filter_map(|op| match op {
            TxnOpResponse::Get(get) => Some(get),
            _ => None,
        })
        .collect();
    let (revision, kvs) = if answer.succeeded() {
        // The put made the revision the answer is at.
        (seen, gets.first().map(etcd_client::GetResponse::kvs))
    } else {
        let revision = gets
            .first()
            .and_then(|get| get.kvs().first())
            .map(etcd_client::KeyValue::create_revision)
            .ok_or_else(|| malformed(shared, "the key was neither created nor found"))?;
        (revision, gets.get(1).map(etcd_client::GetResponse::kvs))
    };
    let kvs = kvs.ok_or_else(|| malformed(shared, "a transaction answer without the queue"))?;
    let queue = Queue {
        prefix,
        key,
        revision,
        mode,
    };
    Ok((revision, queue.look(seen, kvs)))
}

fn malformed(shared: &Shared, what: &str) -> Error {
    Error::Etcd {
        endpoints: shared.endpoints().to_owned(),
        detail: what.to_owned(),
    }
}

/// Waits until no key created before ours conflicts with our mode, while
/// our key still stands, starting from the look `first`. One watch on the
/// lock's prefix follows every delete after the look, so the turn comes
/// with the event that deletes the last blocker, without another round
/// trip; a watch that fails is followed by a fresh look.
async fn wait_turn(
    shared: &Shared,
    queue: &Queue<'_>,
    first: Look,
    lease: &Lease,
    deadline: Option<Instant>,
) -> Result<(), Ended> {
    let mut look = first;
    loop {
        if look.blockers.is_empty() {
            return Ok(());
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Ended::TimedOut);
        }
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            followed = follow(shared, queue, &mut look) => match followed {
                Ok(()) => return Ok(()),
                Err(Followed::OursDeleted) => return Err(Ended::Vanished),
                Err(Followed::Failed(e)) => {
                    tracing::debug!("etcd watch ended early ({e}); looking again");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    look = look_again(shared, queue, deadline).await?;
                }
            },
            () = sleep => return Err(Ended::TimedOut),
            () = lease.lost() => return Err(Ended::Vanished),
            () = shared.closing() => return Err(Ended::Failed(Error::Closed)),
        }
    }
}

/// How following the queue's deletes ended, short of the turn.
enum Followed {
    /// Our own key was deleted (its lease expired, or someone deleted it).
    OursDeleted,
    Failed(etcd_client::Error),
}

/// Watches the deletes under the queue's prefix after `look.seen`, taking
/// each from `look.blockers`, until none is left.
async fn follow(shared: &Shared, queue: &Queue<'_>, look: &mut Look) -> Result<(), Followed> {
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(look.seen + 1)
        .with_filters([WatchFilterType::NoPut]);
    let (at, client) = shared.calls.client().await;
    let result = async {
        let client = client.map_err(Followed::Failed)?;
        let mut stream = client
            .clone()
            .watch(queue.prefix, Some(options))
            .await
            .map_err(Followed::Failed)?;
        loop {
            let answer = stream
                .message()
                .await
                .map_err(Followed::Failed)?
                .ok_or_else(|| {
                    Followed::Failed(etcd_client::Error::WatchError(
                        "the watch stream ended".into(),
                    ))
                })?;
            if answer.canceled() {
                return Err(Followed::Failed(etcd_client::Error::WatchError(format!(
                    "the watch was cancelled: {}",
                    answer.cancel_reason()
                ))));
            }
            for event in answer.events() {
                if event.event_type() != EventType::Delete {
                    continue;
                }
                let Some(kv) = event.kv() else { continue };
                if kv.key() == queue.key.as_bytes() {
                    return Err(Followed::OursDeleted);
                }
                look.blockers.remove(kv.key());
            }
            if look.blockers.is_empty() {
                return Ok(());
            }
        }
    }
    .await;
    if matches!(result, Err(Followed::Failed(_))) {
        shared.calls.move_on(at);
    }
    result
}

/// Looks at the keys before ours, in a transaction that holds only while
/// our key still stands.
async fn look_again(
    shared: &Shared,
    queue: &Queue<'_>,
    deadline: Option<Instant>,
) -> Result<Look, Ended> {
    let before = GetOptions::new()
        .with_prefix()
        .with_max_create_revision(queue.revision - 1);
    let txn = Txn::new()
        .when([Compare::create_revision(
            queue.key,
            CompareOp::Equal,
            queue.revision,
        )])
        .and_then([TxnOp::get(queue.prefix, Some(before))]);
    let answer = shared
        .calls
        .call(deadline, |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await
        .map_err(Ended::Failed)?;
    if !answer.succeeded() {
        return Err(Ended::Vanished);
    }
    let seen = answer
        .header()
        .map_or(0, etcd_client::ResponseHeader::revision);
    let kvs = answer.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(get) => Some(get),
        _ => None,
    });
    Ok(queue.look(
        seen,
        kvs.as_ref().map_or(&[], etcd_client::GetResponse::kvs),
    ))
}

/// Deletes a claim's key: a release.
pub(crate) async fn delete(
    shared: &Shared,
    key: &str,
    deadline: Option<Instant>,
) -> Result<(), Error> {
    shared
        .calls
        .call(deadline, |mut c| {
            let key = key.to_owned();
            async move { c.delete(key, None).await }
        })
        .await
        .map(drop)
}
