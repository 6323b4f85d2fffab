//! The lock recipe against etcd (ARCHITECTURE.md, "Locks beyond one
//! machine"): put a key in the lock's queue, wait by watches until no key
//! before it conflicts, re-check, delete.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Compare, CompareOp, EventType, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
    WatchFilterType, WatchOptions,
};
use locket::Mode;
use tokio::time::Instant;

use crate::error::Error;
use crate::session::{Lease, Shared};

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

/// Acquires the lock `name` for handle `handle` in `mode`, waiting at most
/// `timeout`.
pub(crate) async fn acquire(
    shared: Arc<Shared>,
    name: String,
    handle: u64,
    mode: Mode,
    timeout: Option<Duration>,
) -> Result<Claim, Error> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let prefix = format!("{name}/");
    let value = format!("{} mode={}", shared.holder, mode_word(mode));
    loop {
        let lease = shared.lease(deadline).await?;
        let key = format!("{prefix}{:x}-{handle:x}", lease.id);
        let revision = match create(&shared, &key, &value, lease.id, deadline).await {
            Ok(r) => r,
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
        match wait_turn(&shared, &prefix, &key, revision, mode, &lease, deadline).await {
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

/// Puts `key` if it is not there, and returns its create revision.
async fn create(
    shared: &Shared,
    key: &str,
    value: &str,
    lease: i64,
    deadline: Option<Instant>,
) -> Result<i64, Error> {
    let txn = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key,
            value,
            Some(PutOptions::new().with_lease(lease)),
        )])
        .or_else([TxnOp::get(key, None)]);
    let answer = shared
        .call(deadline, |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await?;
    if answer.succeeded() {
        return answer
            .header()
            .map(etcd_client::ResponseHeader::revision)
            .ok_or_else(|| malformed(shared, "a transaction answer without a header"));
    }
    for op in answer.op_responses() {
        if let TxnOpResponse::Get(get) = op
            && let Some(kv) = get.kvs().first()
        {
            return Ok(kv.create_revision());
        }
    }
    Err(malformed(shared, "the key was neither created nor found"))
}

fn malformed(shared: &Shared, what: &str) -> Error {
    Error::Etcd {
        endpoints: shared.endpoints.clone(),
        detail: what.to_owned(),
    }
}

/// Waits until no key created before ours, under `prefix`, conflicts with
/// `mode`, while our key still stands.
async fn wait_turn(
    shared: &Shared,
    prefix: &str,
    key: &str,
    revision: i64,
    mode: Mode,
    lease: &Lease,
    deadline: Option<Instant>,
) -> Result<(), Ended> {
    loop {
        let before = GetOptions::new()
            .with_prefix()
            .with_max_create_revision(revision - 1);
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, revision)])
            .and_then([TxnOp::get(prefix, Some(before))]);
        let answer = shared
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
        let mut blocker: Option<(i64, Vec<u8>)> = None;
        for op in answer.op_responses() {
            if let TxnOpResponse::Get(get) = op {
                for kv in get.kvs() {
                    let conflicts =
                        mode == Mode::Exclusive || mode_of(kv.value()) == Mode::Exclusive;
                    if conflicts
                        && direct_child(prefix, kv.key())
                        && blocker
                            .as_ref()
                            .is_none_or(|(r, _)| kv.create_revision() > *r)
                    {
                        blocker = Some((kv.create_revision(), kv.key().to_vec()));
                    }
                }
            }
        }
        let Some((_, blocker)) = blocker else {
            return Ok(());
        };
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
            watched = deleted(shared, blocker, seen + 1) => {
                if let Err(e) = watched {
                    tracing::debug!("etcd watch ended early ({e}); looking again");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            () = sleep => return Err(Ended::TimedOut),
            () = lease.lost() => return Err(Ended::Vanished),
        }
    }
}

/// Resolves when `key` is deleted at or after revision `from`.
async fn deleted(shared: &Shared, key: Vec<u8>, from: i64) -> Result<(), etcd_client::Error> {
    let options = WatchOptions::new()
        .with_start_revision(from)
        .with_filters([WatchFilterType::NoPut]);
    let (at, client) = shared.client().await;
    let watched = async {
        let mut stream = client?.watch(key, Some(options)).await?;
        wait_for_delete(&mut stream).await
    };
    let result = watched.await;
    if result.is_err() {
        shared.move_on(at);
    }
    result
}

async fn wait_for_delete(stream: &mut etcd_client::WatchStream) -> Result<(), etcd_client::Error> {
    loop {
        let Some(answer) = stream.message().await? else {
            return Err(etcd_client::Error::WatchError(
                "the watch stream ended".into(),
            ));
        };
        if answer.canceled() {
            return Err(etcd_client::Error::WatchError(format!(
                "the watch was cancelled: {}",
                answer.cancel_reason()
            )));
        }
        if answer
            .events()
            .iter()
            .any(|e| e.event_type() == EventType::Delete)
        {
            return Ok(());
        }
    }
}

/// Deletes a claim's key: a release.
pub(crate) async fn delete(
    shared: &Shared,
    key: &str,
    deadline: Option<Instant>,
) -> Result<(), Error> {
    shared
        .call(deadline, |mut c| {
            let key = key.to_owned();
            async move { c.delete(key, None).await }
        })
        .await
        .map(drop)
}
