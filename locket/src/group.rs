use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::open::Opener;
use crate::{FileId, Lock, Mode};

/// Lock handles that share one single-threaded owner, for self-deadlock detection.
///
/// A plain handle that finds its file held waits, because another thread may
/// release it. An owner that is single-threaded, such as a WebAssembly guest
/// instance, can never release while it waits, so such a wait would hang
/// forever. Handles made with [`LockGroup::lock_file`] know what the group
/// holds, and an acquire that conflicts with a lock the group already holds on
/// the same file, through any of its handles, fails at once with
/// [`LockError::Deadlock`](crate::LockError::Deadlock) instead.
///
/// Cloning a `LockGroup` gives another reference to the same group.
#[derive(Debug, Clone, Default)]
pub struct LockGroup {
    holds: Arc<Mutex<HashMap<FileId, Holds>>>,
}

/// How many of a group's handles hold one file, by mode.
#[derive(Debug, Default)]
struct Holds {
    exclusive: usize,
    shared: usize,
}

impl LockGroup {
    /// A new group that holds nothing.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Names a lock on the file at `path`, as [`lock_file`](crate::lock_file)
    /// does, for a handle that belongs to this group.
    pub fn lock_file(&self, path: impl Into<PathBuf>) -> Lock {
        Lock::new(path.into(), Some(self.clone()))
    }

    /// Names a lock whose file `opener` opens, as
    /// [`Lock::with_opener`] does, for a handle that belongs to this group.
    pub fn lock_with_opener(&self, name: impl Into<PathBuf>, opener: impl Opener) -> Lock {
        Lock::from_parts(name.into(), Box::new(opener), Some(self.clone()))
    }

    fn holds(&self) -> MutexGuard<'_, HashMap<FileId, Holds>> {
        self.holds.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether acquiring `file` in `mode` conflicts with what the group holds.
    pub(crate) fn conflicts(&self, file: FileId, mode: Mode) -> bool {
        self.holds().get(&file).is_some_and(|h| {
            (h.exclusive > 0 && mode.conflicts_with(Mode::Exclusive))
                || (h.shared > 0 && mode.conflicts_with(Mode::Shared))
        })
    }

    pub(crate) fn record(&self, file: FileId, mode: Mode) {
        let mut holds = self.holds();
        let h = holds.entry(file).or_default();
        match mode {
            Mode::Exclusive => h.exclusive += 1,
            Mode::Shared => h.shared += 1,
        }
    }

    pub(crate) fn forget(&self, file: FileId, mode: Mode) {
        let mut holds = self.holds();
        if let Some(h) = holds.get_mut(&file) {
            match mode {
                Mode::Exclusive => h.exclusive = h.exclusive.saturating_sub(1),
                Mode::Shared => h.shared = h.shared.saturating_sub(1),
            }
            if h.exclusive == 0 && h.shared == 0 {
                holds.remove(&file);
            }
        }
    }
}
