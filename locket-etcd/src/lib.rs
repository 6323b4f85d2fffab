//! locket's locks across machines, kept in an [etcd] cluster.
//!
//! A [`Session`] connects to the cluster and keeps one lease alive in the
//! background; a [`Lock`] made from it is a handle on one named lock, with
//! the shape of `locket::Lock`: exclusive and shared modes, timeouts (`None`
//! waits, zero tries once), guards, not reentrant. Locks follow etcd's own
//! recipe, so they exclude and are excluded by `etcdctl lock NAME` in both
//! directions, and handles of one process exclude each other.
//!
//! ```no_run
//! use std::time::Duration;
//! use locket_etcd::{Address, Connect};
//!
//! # fn main() -> Result<(), locket_etcd::Error> {
//! let address = Address::parse("etcd://127.0.0.1:2379/jobs/deploy")?;
//! let session = Connect::new(address.cluster)
//!     .lease_ttl(Duration::from_secs(10))
//!     .from_env()? // LOCKET_ETCD_USER, LOCKET_ETCD_PASSWORD, LOCKET_ETCD_CA, ...
//!     .session()?;
//! let lock = session.lock(&address.name)?.with_timeout(Some(Duration::from_secs(5)));
//! let guard = lock.lock()?;
//! let token = guard.token(); // pass it to what the lock protects
//! # let _ = token;
//! drop(guard);
//! # Ok(())
//! # }
//! ```
//!
//! # What a lease-based lock promises
//!
//! If the process dies or is cut off, the cluster frees its locks when its
//! lease expires (the TTL). The other side of that promise: a holder that is
//! paused or partitioned past the TTL loses its locks while it still runs.
//! This crate notices by itself once it runs again ([`Lock::is_locked`]
//! turns false), but it cannot stop a write already on its way. That is what
//! the fencing token is for: [`Lock::token`] grows with every grant of a
//! lock, and a resource that refuses tokens lower than the highest it has
//! seen cannot be written by a stale holder. No lease-based lock is safe
//! without such a check.
//!
//! [etcd]: https://etcd.io

#![warn(missing_docs)]

mod calls;
mod connect;
mod error;
mod holders;
mod lease;
mod lock;
mod recipe;
mod session;
mod target;

pub use connect::{
    Connect, DEFAULT_CONNECT_TIMEOUT, DEFAULT_LEASE_TTL, ENV_CA, ENV_CERT, ENV_KEY, ENV_PASSWORD,
    ENV_PASSWORD_FILE, ENV_USER,
};
pub use error::Error;
pub use holders::Holder;
pub use lock::{Lock, LockGroup, LockGuard};
pub use locket::Mode;
pub use session::Session;
pub use target::{Address, Cluster, DEFAULT_PORT, MAX_COMPONENT, MAX_NAME, check_name};
