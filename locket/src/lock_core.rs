//! The lock core: one handle's state, and the acquire loop and release that
//! [`Lock`](crate::Lock) and the async acquire both drive.
//!
//! One acquire: refuse re-entry, open the file once (through the handle's
//! [`Opener`]), check the handle's group for a self-deadlock, try once, wait
//! if the timeout allows, and once locked, check that the path still names
//! the file locked (else re-open and lock the new file).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::LockError;
use crate::holds::Holds;
use crate::mode::Mode;
use crate::open::{FileId, OpenError, Opener};
use crate::sys;
use crate::wait::{self, Cancel, Wait};

/// What a handle locks and holds. Shared (`Arc`) with the thread that waits
/// for an async acquire, so that the wait never outlives what it uses.
pub(crate) struct Core {
    path: PathBuf,
    opener: Box<dyn Opener>,
    /// The handle's group's holds, if it belongs to a group.
    group: Option<Arc<Holds>>,
    /// Whether acquires check that the path still names the locked file.
    check_replacement: AtomicBool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The open lock file, once the first acquire opened it. Taken out while an
    /// acquire waits, so that the state is not locked during the wait.
    file: Option<Opened>,
    /// The mode this handle holds, if any.
    held: Option<Mode>,
    /// An acquire is in progress on this handle.
    acquiring: bool,
    /// Counts successful acquires, so that a guard releases only the hold it
    /// was made for, never a later one of the same handle.
    generation: u64,
}

struct Opened {
    file: File,
    id: FileId,
    /// The file's stamp when the opener last found it at the path, if any
    /// later change to the file's names is sure to change the stamp: while
    /// the stamp stays the same, the path still names the file.
    trusted: Option<sys::Stamp>,
    /// Whether the path reaches the file through no symlink, once asked.
    direct: Option<bool>,
    /// How many more checks only walk the path, without the `fstat`: after
    /// the stamp could not vouch for the file (it changes all the time, as
    /// when locket.py truncates the file at each acquire, or the path has a
    /// symlink), the `fstat` would only add to the walk.
    walk_only: u32,
}

/// Checks that only walk the path after the stamp could not vouch for the
/// file, before the `fstat` is tried again.
const WALK_ONLY: u32 = 63;

impl Core {
    pub(crate) fn new(path: PathBuf, opener: Box<dyn Opener>, group: Option<Arc<Holds>>) -> Self {
        Self {
            path,
            opener,
            group,
            check_replacement: AtomicBool::new(true),
            state: Mutex::new(State::default()),
        }
    }

    /// The lock's name: the path as given, or the name given with an opener.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The mode this handle holds now, if any.
    pub(crate) fn held(&self) -> Option<Mode> {
        self.state().held
    }

    /// The generation of the current (or last) hold.
    pub(crate) fn generation(&self) -> u64 {
        self.state().generation
    }

    /// Whether the handle belongs to a group.
    pub(crate) fn is_grouped(&self) -> bool {
        self.group.is_some()
    }

    /// Turns the replaced-file check on or off for later acquires.
    pub(crate) fn set_replacement_check(&self, check: bool) {
        self.check_replacement.store(check, Ordering::Relaxed);
    }

    /// Acquires in `mode`, waiting as `wait` says (or until `cancel` is
    /// cancelled), and returns the hold's generation. `timeout` is what the
    /// caller asked for, for the error.
    pub(crate) fn acquire(
        &self,
        mode: Mode,
        wait: Wait,
        timeout: Option<Duration>,
        cancel: Option<&Cancel>,
    ) -> Result<u64, LockError> {
        // Clears `acquiring` even if an `Opener` panics.
        struct Acquiring<'a>(&'a Core);
        impl Drop for Acquiring<'_> {
            fn drop(&mut self) {
                self.0.state().acquiring = false;
            }
        }
        let cached = {
            let mut state = self.state();
            if state.held.is_some() || state.acquiring {
                return Err(LockError::AlreadyLocked {
                    path: self.path.clone(),
                });
            }
            state.acquiring = true;
            state.file.take()
        };
        let acquiring = Acquiring(self);
        let (outcome, file) = self.acquire_file(mode, wait, timeout, cached, cancel);
        let mut state = self.state();
        // Clear `acquiring` in the same critical section that records the
        // hold, so that no other acquire slips in between.
        std::mem::forget(acquiring);
        state.acquiring = false;
        state.file = file;
        outcome?;
        state.held = Some(mode);
        state.generation += 1;
        Ok(state.generation)
    }

    /// Reports an acquire's outcome to `tracing`.
    pub(crate) fn trace(
        &self,
        mode: Mode,
        timeout: Option<Duration>,
        started: Instant,
        outcome: &Result<u64, LockError>,
        is_async: bool,
    ) {
        let waited_us = started.elapsed().as_micros();
        let path = &self.path;
        match outcome {
            Ok(_) => {
                tracing::debug!(?path, ?mode, ?timeout, waited_us, is_async, "acquired")
            }
            Err(e) => {
                tracing::debug!(?path, ?mode, ?timeout, waited_us, is_async, error = %e, "acquire failed")
            }
        }
    }

    /// Releases, but only the hold of `generation` when one is given.
    pub(crate) fn release_if(&self, generation: Option<u64>) -> Result<(), LockError> {
        let mut state = self.state();
        let current = generation.is_none_or(|g| g == state.generation);
        let (Some(mode), Some(opened), true) = (state.held, state.file.as_ref(), current) else {
            return Err(LockError::NotLocked {
                path: self.path.clone(),
            });
        };
        let unlocked = opened.file.unlock();
        tracing::debug!(path = ?self.path, ?mode, "released");
        if let Some(group) = &self.group {
            group.forget(opened.id, mode);
        }
        state.held = None;
        if let Err(source) = unlocked {
            state.file = None; // closing the file releases the lock
            return Err(self.io_error(source));
        }
        Ok(())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn io_error(&self, source: std::io::Error) -> LockError {
        LockError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Opens (if needed) and locks the file, re-opening if the path was
    /// replaced meanwhile. Returns the open file for the handle to keep, also
    /// on failure.
    fn acquire_file(
        &self,
        mode: Mode,
        wait: Wait,
        timeout: Option<Duration>,
        mut cached: Option<Opened>,
        cancel: Option<&Cancel>,
    ) -> (Result<(), LockError>, Option<Opened>) {
        loop {
            let (mut opened, was_cached) = match cached.take() {
                Some(opened) => (opened, true),
                None => match self.open() {
                    Ok(opened) => (opened, false),
                    Err(e) => return (Err(e), None),
                },
            };
            // A file kept open from an earlier acquire may since have been
            // deleted or replaced. Checking costs a system call, so it is
            // done only where a stale file would mislead: before reporting a
            // deadlock and before waiting. (After locking, every acquire
            // checks.)
            let check = self.check_replacement.load(Ordering::Relaxed);
            let stale = |opened: &mut Opened| {
                check && was_cached && !matches!(self.still_named(opened), Ok(true))
            };
            if let Some(group) = &self.group
                && group.conflicts(opened.id, mode)
            {
                if stale(&mut opened) {
                    continue; // `cached` is None now: reopen
                }
                let path = self.path.clone();
                return (Err(LockError::Deadlock { path }), Some(opened));
            }
            let got = match wait::try_lock(&opened.file, mode) {
                Ok(false) if stale(&mut opened) => continue,
                Ok(false) => wait::wait_for(&opened.file, mode, wait, cancel),
                other => other,
            };
            match got {
                Ok(true) => {}
                Ok(false) => {
                    let error = LockError::Timeout {
                        path: self.path.clone(),
                        timeout: timeout.unwrap_or_default(),
                    };
                    return (Err(error), Some(opened));
                }
                Err(e) => return (Err(self.io_error(e)), Some(opened)),
            }
            // We hold the file we opened; make sure it is still the one the
            // path names, or the lock would exclude nobody.
            let named = if check {
                self.still_named(&mut opened)
            } else {
                Ok(true)
            };
            match named {
                Ok(true) => {
                    if let Some(group) = &self.group {
                        group.record(opened.id, mode);
                    }
                    return (Ok(()), Some(opened));
                }
                Ok(false) => {
                    // Deleted or replaced: drop it (closing unlocks) and retry.
                    drop(opened);
                }
                Err(e) => {
                    let _ = opened.file.unlock();
                    return (Err(self.io_error(e)), Some(opened));
                }
            }
        }
    }

    /// Whether the path still names the open file. One `fstat` of the file
    /// answers when the file has no name left (deleted, or renamed over), or
    /// when its stamp is the one it had when the opener last found it at the
    /// path; otherwise the opener resolves the path.
    fn still_named(&self, opened: &mut Opened) -> std::io::Result<bool> {
        let identified = |opened: &Opened| -> std::io::Result<bool> {
            Ok(matches!(self.opener.identify()?, Some(id) if id == opened.id))
        };
        if opened.walk_only > 0 {
            opened.walk_only -= 1;
            return identified(opened);
        }
        let stamp = sys::stamp(&opened.file)?;
        if let Some(stamp) = stamp {
            if stamp.unlinked() {
                return Ok(false);
            }
            if opened.trusted == Some(stamp) {
                return Ok(true);
            }
        }
        let named = identified(opened)?;
        // The stamp was read before the path was resolved, so a change in
        // between shows as a new stamp next time.
        opened.trusted = stamp.filter(|stamp| {
            named
                && stamp.settled()
                && *opened
                    .direct
                    .get_or_insert_with(|| self.opener.reaches_without_symlinks())
        });
        if named && opened.trusted.is_none() {
            opened.walk_only = WALK_ONLY;
        }
        Ok(named)
    }

    fn open(&self) -> Result<Opened, LockError> {
        let path = &self.path;
        let not_regular = |kind| LockError::NotRegularFile {
            path: path.clone(),
            kind,
        };
        let file = self.opener.open().map_err(|e| match e {
            OpenError::InvalidPath(reason) => LockError::InvalidPath {
                path: path.clone(),
                reason,
            },
            OpenError::NotRegularFile(kind) => not_regular(kind),
            OpenError::Io(source) => match source.kind() {
                std::io::ErrorKind::NotFound => LockError::MissingParent { path: path.clone() },
                std::io::ErrorKind::PermissionDenied => LockError::AccessDenied {
                    path: path.clone(),
                    source,
                },
                _ => self.io_error(source),
            },
        })?;
        let meta = file.metadata().map_err(|e| self.io_error(e))?;
        if let Some(kind) = sys::non_regular_kind(&meta) {
            return Err(not_regular(kind));
        }
        let id = sys::file_id(&file, &meta)
            .map(FileId)
            .map_err(|e| self.io_error(e))?;
        Ok(Opened {
            file,
            id,
            trusted: None,
            direct: None,
            walk_only: 0,
        })
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if let (Some(mode), Some(opened), Some(group)) = (state.held, &state.file, &self.group) {
            group.forget(opened.id, mode);
        }
        // Closing the file releases the OS lock.
    }
}
