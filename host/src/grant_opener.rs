//! Opening a lock file beneath a granted directory, for the `locket` library:
//! cap-std resolves every component inside the directory, so nothing outside
//! it can be opened.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cap_std::fs::{Dir, MetadataExt, OpenOptions, OpenOptionsExt};
use locket::{FileId, OpenError, OpenStep, Opener, open_lock_file};

/// Opens a lock file beneath a granted directory, for the `locket` library.
///
/// cap-std resolves the path inside the directory, so `..`, absolute symlinks
/// and symlinks that leave the directory fail with `PermissionDenied`, which
/// the guest sees as `access-denied`.
#[derive(Debug)]
pub(crate) struct GrantOpener {
    pub(crate) dir: Arc<Dir>,
    pub(crate) relative: PathBuf,
    /// Whether a missing lock file is created (a read-write grant).
    pub(crate) may_create: bool,
}

impl GrantOpener {
    fn parent_exists(&self) -> bool {
        let parent = match self.relative.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        self.dir.metadata(parent).is_ok_and(|m| m.is_dir())
    }
}

impl Opener for GrantOpener {
    fn open(&self) -> Result<File, OpenError> {
        match self.dir.metadata(&self.relative) {
            Ok(meta) => {
                if let Some(e) = OpenError::if_not_regular(meta.mode()) {
                    return Err(e);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let opened = open_lock_file(self.may_create, |step| {
            let file = self.dir.open_with(&self.relative, &options(step))?;
            Ok(file.into_std())
        });
        match opened {
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    && !self.may_create
                    && self.parent_exists() =>
            {
                Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "the lock file does not exist and its directory is granted read-only",
                )
                .into())
            }
            other => Ok(other?),
        }
    }

    fn identify(&self) -> io::Result<Option<FileId>> {
        // An acquire calls this once it holds the lock whenever one `fstat`
        // of the file cannot vouch for it (see `Opener::reaches_without_symlinks`),
        // so it can be on the hand-off path. Without following the last component, cap-std can
        // stat a name in the granted directory in one `fstatat`; only when
        // that name is a symlink do we need the full (following) resolution.
        let meta = match self.dir.symlink_metadata(&self.relative) {
            Ok(meta) if !meta.file_type().is_symlink() => Ok(meta),
            Ok(_) => self.dir.metadata(&self.relative),
            Err(e) => Err(e),
        };
        match meta {
            Ok(meta) => Ok(Some(FileId::from_dev_ino(meta.dev(), meta.ino()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn reaches_without_symlinks(&self) -> bool {
        // Each prefix of the relative path, stat'ed without following it.
        let mut prefix = PathBuf::new();
        self.relative.components().all(|component| {
            prefix.push(component);
            self.dir
                .symlink_metadata(&prefix)
                .is_ok_and(|meta| !meta.file_type().is_symlink())
        })
    }
}

/// cap-std's open options for one step of [`open_lock_file`], with the flags
/// and mode that `locket` prescribes (cap-std adds close-on-exec).
fn options(step: OpenStep) -> OpenOptions {
    let mut options = OpenOptions::new();
    match step {
        OpenStep::Existing => options.read(true),
        OpenStep::Create => options.write(true).create(true).mode(locket::CREATE_MODE),
    };
    options.custom_flags(locket::OPEN_FLAGS);
    options
}
