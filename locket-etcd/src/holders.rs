//! Who holds a distributed lock and who waits for it, read from its keys.

use std::time::Duration;

use etcd_client::{GetOptions, LeaseTimeToLiveOptions, SortOrder, SortTarget};
use locket::Mode;
use tokio::time::Instant;

use crate::error::Error;
use crate::recipe::{direct_child, mode_of};
use crate::session::Session;
use crate::target::check_name;

/// One key in a lock's queue: a holder, or a waiter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The etcd key.
    pub key: String,
    /// The lease it is attached to.
    pub lease: i64,
    /// How long the lease has left, when etcd said.
    pub ttl_left: Option<Duration>,
    /// The key's create revision: its place in the queue, and the fencing
    /// token of its grant.
    pub revision: i64,
    /// The mode asked for. Keys without a mode (etcdctl's) are exclusive.
    pub mode: Mode,
    /// Whether it holds the lock (else it waits).
    pub holding: bool,
    /// The holder's host name, when its key records one.
    pub host: Option<String>,
    /// The holder's process id, when its key records one.
    pub pid: Option<u32>,
}

impl Session {
    /// Lists who holds the lock `name` and who waits for it, in queue order.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] for a name that cannot be used, and the
    /// cluster's errors ([`Error::Unavailable`] within the connect timeout).
    pub fn holders(&self, name: &str) -> Result<Vec<Holder>, Error> {
        check_name(name)?;
        let shared = self.shared();
        let prefix = format!("{name}/");
        self.block_on(async move {
            let deadline = Some(Instant::now() + Duration::from_secs(5));
            let options = GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Create, SortOrder::Ascend);
            let p = prefix.clone();
            let answer = shared
                .calls
                .call(deadline, |mut c| {
                    let p = p.clone();
                    let options = options.clone();
                    async move { c.get(p, Some(options)).await }
                })
                .await?;
            let mut list: Vec<Holder> = Vec::new();
            let mut exclusive_before = false;
            for kv in answer.kvs() {
                if !direct_child(&prefix, kv.key()) {
                    continue;
                }
                let mode = mode_of(kv.value());
                let holding = match mode {
                    Mode::Exclusive => list.is_empty(),
                    Mode::Shared => !exclusive_before,
                };
                exclusive_before |= mode == Mode::Exclusive;
                let value = String::from_utf8_lossy(kv.value()).into_owned();
                let word = |w: &str| {
                    value
                        .split_whitespace()
                        .find_map(|p| p.strip_prefix(w).map(str::to_owned))
                };
                let lease = kv.lease();
                let ttl_left = shared
                    .calls
                    .call(deadline, |mut c| async move {
                        c.lease_time_to_live(lease, Some(LeaseTimeToLiveOptions::new()))
                            .await
                    })
                    .await
                    .ok()
                    .and_then(|t| u64::try_from(t.ttl()).ok())
                    .map(Duration::from_secs);
                list.push(Holder {
                    key: String::from_utf8_lossy(kv.key()).into_owned(),
                    lease,
                    ttl_left,
                    revision: kv.create_revision(),
                    mode,
                    holding,
                    host: word("host="),
                    pid: word("pid=").and_then(|p| p.parse().ok()),
                });
            }
            Ok(list)
        })?
    }
}
