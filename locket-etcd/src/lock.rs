//! The handle on one distributed lock, shaped like `locket::Lock`, its
//! guard, and the group whose handles detect deadlocks among themselves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use locket::Mode;
use tokio::time::Instant;

use crate::error::Error;
use crate::lease::Lease;
use crate::recipe::{self, Claim};
use crate::session::Session;
use crate::target::check_name;

/// How long a release may try to reach the cluster.
const RELEASE_BOUND: Duration = Duration::from_secs(10);

/// A handle on the distributed lock `NAME` of a [`Session`]'s cluster.
///
/// It behaves as `locket::Lock` does: it owns what it acquires, is not
/// reentrant, and releases on [`release`](Self::release), on drop, or when
/// its session ends. Handles of one process exclude each other, and exclude
/// and are excluded by `etcdctl lock NAME` and other hosts.
///
/// A lock whose lease is lost (the process was cut off or paused past the
/// TTL) is lost: [`is_locked`](Self::is_locked) turns false and
/// [`token`](Self::token) `None`. Check the token where it matters: see
/// [`token`](Self::token).
pub struct Lock {
    session: Session,
    name: String,
    id: u64,
    timeout: Option<Duration>,
    group: Option<LockGroup>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    held: Option<(Claim, Mode)>,
    acquiring: bool,
}

impl Session {
    /// A handle on the lock `name` (checked by
    /// [`check_name`](crate::check_name)). Takes no lock and makes no call.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] for a name that cannot be used.
    pub fn lock(&self, name: &str) -> Result<Lock, Error> {
        check_name(name)?;
        Ok(Lock {
            session: self.clone(),
            name: name.to_owned(),
            id: self.next_handle(),
            timeout: None,
            group: None,
            state: Mutex::new(State::default()),
        })
    }
}

impl Lock {
    /// The lock's name in its group: the same name on two clusters is two
    /// locks.
    fn group_key(&self) -> String {
        format!("{} {}", self.session.endpoints(), self.name)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the timeout that [`acquire`](Self::acquire) and its kin use:
    /// `None` waits as long as it takes, `Some(ZERO)` tries once.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// The lock's etcd name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this handle holds the lock now: it acquired it and its lease
    /// has not been lost.
    #[must_use]
    pub fn is_locked(&self) -> bool {
        self.state()
            .held
            .as_ref()
            .is_some_and(|(claim, _)| claim.lease.valid())
    }

    /// The mode held, while [`is_locked`](Self::is_locked).
    #[must_use]
    pub fn mode(&self) -> Option<Mode> {
        self.state()
            .held
            .as_ref()
            .filter(|(claim, _)| claim.lease.valid())
            .map(|(_, mode)| *mode)
    }

    /// The fencing token of the grant this handle holds: the create
    /// revision of its key, which grows with every grant of this lock,
    /// cluster-wide. `None` when the handle holds nothing or its lock was
    /// lost.
    ///
    /// A lease-based lock cannot by itself stop a holder that was paused
    /// past its lease from acting as if it still held the lock. Pass the
    /// token to what the lock protects, and have it refuse any token lower
    /// than the highest it has seen.
    #[must_use]
    pub fn token(&self) -> Option<u64> {
        self.state()
            .held
            .as_ref()
            .filter(|(claim, _)| claim.lease.valid())
            .and_then(|(claim, _)| u64::try_from(claim.revision).ok())
    }

    /// Acquires exclusively, with the handle's timeout.
    ///
    /// # Errors
    ///
    /// As [`acquire_with`](Self::acquire_with).
    pub fn acquire(&self) -> Result<(), Error> {
        self.acquire_with(Mode::Exclusive, self.timeout)
    }

    /// Acquires shared, with the handle's timeout.
    ///
    /// # Errors
    ///
    /// As [`acquire_with`](Self::acquire_with).
    pub fn acquire_shared(&self) -> Result<(), Error> {
        self.acquire_with(Mode::Shared, self.timeout)
    }

    /// Acquires exclusively and returns a guard that releases on drop.
    ///
    /// # Errors
    ///
    /// As [`acquire_with`](Self::acquire_with).
    pub fn lock(&self) -> Result<LockGuard<'_>, Error> {
        self.acquire()?;
        Ok(LockGuard {
            lock: self,
            mode: Mode::Exclusive,
        })
    }

    /// Acquires shared and returns a guard that releases on drop.
    ///
    /// # Errors
    ///
    /// As [`acquire_with`](Self::acquire_with).
    pub fn lock_shared(&self) -> Result<LockGuard<'_>, Error> {
        self.acquire_shared()?;
        Ok(LockGuard {
            lock: self,
            mode: Mode::Shared,
        })
    }

    /// Acquires in `mode`, waiting at most `timeout` (`None`: as long as it
    /// takes; zero: one try). Blocks this thread; works from any thread.
    ///
    /// # Errors
    ///
    /// - [`Error::AlreadyLocked`]: this handle holds or is acquiring it;
    /// - [`Error::Deadlock`]: another handle of its group holds it in a
    ///   conflicting mode;
    /// - [`Error::Timeout`]: held elsewhere for the whole timeout;
    /// - [`Error::Unavailable`]: the cluster did not answer within the
    ///   timeout (no quorum, unreachable);
    /// - [`Error::Auth`], [`Error::Etcd`]: what etcd refused.
    pub fn acquire_with(&self, mode: Mode, timeout: Option<Duration>) -> Result<(), Error> {
        self.begin(mode)?;
        let shared = self.session.shared();
        let work = recipe::acquire(shared, self.name.clone(), mode, timeout);
        let result = self.session.block_on(work).and_then(|r| r);
        self.finish(mode, result)
    }

    /// [`acquire_with`](Self::acquire_with) as a future, which any
    /// executor can await. Dropping it before it finishes cancels the
    /// acquire, and a lock it got in the meantime is released.
    ///
    /// # Errors
    ///
    /// As [`acquire_with`](Self::acquire_with).
    pub async fn acquire_with_async(
        &self,
        mode: Mode,
        timeout: Option<Duration>,
    ) -> Result<(), Error> {
        /// Releases what a cancelled acquire gets, and unmarks the handle.
        struct Cancel<'a> {
            lock: &'a Lock,
            task: Option<tokio::task::JoinHandle<Result<Claim, Error>>>,
        }
        impl Drop for Cancel<'_> {
            fn drop(&mut self) {
                if let Some(task) = self.task.take() {
                    self.lock.state().acquiring = false;
                    self.lock
                        .session
                        .shared()
                        .in_background(move |shared| async move {
                            if let Ok(Ok(claim)) = task.await {
                                claim.lease.forget_hold();
                                shared.delete_later(claim.key);
                            }
                        });
                }
            }
        }
        self.begin(mode)?;
        let shared = self.session.shared();
        let work = recipe::acquire(shared, self.name.clone(), mode, timeout);
        let mut cancel = Cancel {
            lock: self,
            task: Some(self.session.spawn(work)),
        };
        let result = match &mut cancel.task {
            Some(task) => task.await,
            None => return Err(Error::Closed),
        };
        cancel.task = None;
        let result = result.map_err(|_| Error::Closed).and_then(|r| r);
        self.finish(mode, result)
    }

    /// Marks the handle as acquiring, after the reentrancy and group checks.
    fn begin(&self, mode: Mode) -> Result<(), Error> {
        let mut state = self.state();
        if state.acquiring {
            return Err(Error::AlreadyLocked {
                name: self.name.clone(),
            });
        }
        if let Some((claim, _)) = &state.held {
            if claim.lease.valid() {
                return Err(Error::AlreadyLocked {
                    name: self.name.clone(),
                });
            }
            // Lost: forget it and acquire afresh.
            self.drop_claim(&mut state);
        }
        if let Some(group) = &self.group
            && group.conflicts(&self.group_key(), mode)
        {
            return Err(Error::Deadlock {
                name: self.name.clone(),
            });
        }
        state.acquiring = true;
        Ok(())
    }

    fn finish(&self, mode: Mode, result: Result<Claim, Error>) -> Result<(), Error> {
        let mut state = self.state();
        state.acquiring = false;
        let claim = result?;
        if let Some(group) = &self.group {
            group.record(&self.group_key(), self.id, mode, Arc::clone(&claim.lease));
        }
        state.held = Some((claim, mode));
        Ok(())
    }

    /// Forgets the hold in `state`, deleting its key in the background.
    fn drop_claim(&self, state: &mut State) {
        if let Some((claim, _)) = state.held.take() {
            if let Some(group) = &self.group {
                group.forget(&self.group_key(), self.id);
            }
            claim.lease.forget_hold();
            self.session.delete_later(claim.key);
        }
    }

    /// Releases the lock this handle holds.
    ///
    /// # Errors
    ///
    /// [`Error::NotLocked`] when it holds nothing (never acquired, already
    /// released, or lost with its lease); [`Error::Unavailable`] when the
    /// cluster could not be reached to delete the key (the handle holds
    /// nothing afterwards, and the lease frees the key when it expires).
    pub fn release(&self) -> Result<(), Error> {
        let mut state = self.state();
        let Some((claim, _)) = state.held.take() else {
            return Err(Error::NotLocked {
                name: self.name.clone(),
            });
        };
        if let Some(group) = &self.group {
            group.forget(&self.group_key(), self.id);
        }
        claim.lease.forget_hold();
        let valid = claim.lease.valid();
        drop(state);
        if !valid {
            self.session.delete_later(claim.key);
            return Err(Error::NotLocked {
                name: self.name.clone(),
            });
        }
        let shared = self.session.shared();
        let key = claim.key;
        self.session
            .block_on(async move {
                recipe::delete(&shared, &key, Some(Instant::now() + RELEASE_BOUND)).await
            })
            .and_then(|r| r)
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut taken = State {
            held: state.held.take(),
            acquiring: false,
        };
        drop(state);
        self.drop_claim(&mut taken);
    }
}

impl std::fmt::Debug for Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lock")
            .field("name", &self.name)
            .field("locked", &self.is_locked())
            .field("token", &self.token())
            .finish_non_exhaustive()
    }
}

/// Holds a [`Lock`] and releases it when dropped.
#[must_use = "dropping the guard releases the lock at once"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
    mode: Mode,
}

impl LockGuard<'_> {
    /// The mode held.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The fencing token of the grant, while it holds (see [`Lock::token`]).
    pub fn token(&self) -> Option<u64> {
        self.lock.token()
    }

    /// Releases now, and reports whether the release succeeded.
    ///
    /// # Errors
    ///
    /// As [`Lock::release`].
    pub fn unlock(self) -> Result<(), Error> {
        let lock = self.lock;
        std::mem::forget(self);
        lock.release()
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.lock.release();
    }
}

/// Handles that belong together, as a plugin instance's do: an acquire that
/// conflicts with a hold of another handle of the group fails with
/// [`Error::Deadlock`] at once, since one thread could never see it end.
#[derive(Debug, Default, Clone)]
pub struct LockGroup {
    holds: Arc<Mutex<HashMap<String, Vec<Hold>>>>,
}

struct Hold {
    handle: u64,
    mode: Mode,
    lease: Arc<Lease>,
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} by handle {}", self.mode, self.handle)
    }
}

impl LockGroup {
    /// An empty group.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A handle on the lock `name` of `session`, in this group.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] for a name that cannot be used.
    pub fn lock(&self, session: &Session, name: &str) -> Result<Lock, Error> {
        let mut lock = session.lock(name)?;
        lock.group = Some(self.clone());
        Ok(lock)
    }

    fn table(&self) -> MutexGuard<'_, HashMap<String, Vec<Hold>>> {
        self.holds.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn conflicts(&self, name: &str, mode: Mode) -> bool {
        self.table().get(name).is_some_and(|holds| {
            holds
                .iter()
                .any(|h| h.lease.valid() && mode.conflicts_with(h.mode))
        })
    }

    fn record(&self, name: &str, handle: u64, mode: Mode, lease: Arc<Lease>) {
        self.table().entry(name.to_owned()).or_default().push(Hold {
            handle,
            mode,
            lease,
        });
    }

    fn forget(&self, name: &str, handle: u64) {
        let mut table = self.table();
        if let Some(holds) = table.get_mut(name) {
            holds.retain(|h| h.handle != handle);
            if holds.is_empty() {
                table.remove(name);
            }
        }
    }
}
