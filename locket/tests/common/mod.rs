//! What the `locket` library's tests share.

use std::path::{Path, PathBuf};
use std::time::Duration;

use locket::{LockError, Mode, lock_file};

/// A generous upper bound for things that should happen at once.
pub const PROMPT: Duration = Duration::from_secs(10);
/// The timeout that tries once.
pub const TRY_ONCE: Option<Duration> = Some(Duration::ZERO);

/// A scratch directory and the path of a lock file `x.lock` in it.
pub fn scratch() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.lock");
    (dir, path)
}

/// Whether another handle can take the lock in `mode` at once (it lets go
/// again at once).
pub fn is_free(path: &Path, mode: Mode) -> bool {
    let other = lock_file(path);
    match other.acquire_with(mode, TRY_ONCE) {
        Ok(()) => true,
        Err(LockError::Timeout { path: p, timeout }) => {
            assert_eq!(p, path, "the error names another path");
            assert_eq!(timeout, Duration::ZERO, "the error names another timeout");
            false
        }
        Err(e) => panic!("probing {}: {e}", path.display()),
    }
}
