//! What one [`LockGroup`](crate::LockGroup) holds: the table behind its
//! self-deadlock detection.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::mode::Mode;
use crate::open::FileId;

/// How many of a group's handles hold each file, by mode.
#[derive(Debug, Default)]
pub(crate) struct Holds {
    files: Mutex<HashMap<FileId, Count>>,
}

#[derive(Debug, Default)]
struct Count {
    exclusive: usize,
    shared: usize,
}

impl Holds {
    fn files(&self) -> MutexGuard<'_, HashMap<FileId, Count>> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether acquiring `file` in `mode` conflicts with what the group holds.
    pub(crate) fn conflicts(&self, file: FileId, mode: Mode) -> bool {
        self.files().get(&file).is_some_and(|c| {
            (c.exclusive > 0 && mode.conflicts_with(Mode::Exclusive))
                || (c.shared > 0 && mode.conflicts_with(Mode::Shared))
        })
    }

    /// Counts a new hold of `file` in `mode`.
    pub(crate) fn record(&self, file: FileId, mode: Mode) {
        let mut files = self.files();
        let c = files.entry(file).or_default();
        match mode {
            Mode::Exclusive => c.exclusive += 1,
            Mode::Shared => c.shared += 1,
        }
    }

    /// Forgets one hold of `file` in `mode`.
    pub(crate) fn forget(&self, file: FileId, mode: Mode) {
        let mut files = self.files();
        if let Some(c) = files.get_mut(&file) {
            match mode {
                Mode::Exclusive => c.exclusive = c.exclusive.saturating_sub(1),
                Mode::Shared => c.shared = c.shared.saturating_sub(1),
            }
            if c.exclusive == 0 && c.shared == 0 {
                files.remove(&file);
            }
        }
    }
}
