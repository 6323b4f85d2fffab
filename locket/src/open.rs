use std::fs::File;
use std::io;
use std::path::PathBuf;

use crate::sys;

/// The identity of a file: what makes two paths the same lock.
///
/// On Unix it is the device and inode numbers; on Windows, the volume serial
/// number and the file index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId(pub(crate) sys::FileId);

impl FileId {
    /// The identity of an open file.
    ///
    /// # Errors
    ///
    /// If the operating system cannot describe the file.
    pub fn of(file: &File) -> io::Result<Self> {
        let meta = file.metadata()?;
        sys::file_id(file, &meta).map(Self)
    }

    /// An identity from a device and an inode number, as `stat(2)` gives them.
    #[cfg(unix)]
    #[must_use]
    pub fn from_dev_ino(dev: u64, ino: u64) -> Self {
        Self(sys::FileId::new(dev, ino))
    }
}

/// Why an [`Opener`] could not open a lock file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The name refers to something other than a regular file; the payload
    /// says what ("directory", "FIFO", ...). It must be reported without
    /// opening it.
    #[error("it is a {0}, not a regular file")]
    NotRegularFile(&'static str),
    /// An error from the operating system. `NotFound` is reported as a missing
    /// parent directory (the file itself is created when missing) and
    /// `PermissionDenied` as [`LockError::AccessDenied`](crate::LockError::AccessDenied).
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl OpenError {
    /// [`OpenError::NotRegularFile`] if the file type in `st_mode` (as
    /// `stat(2)` reports it) is not a regular file, for an [`Opener`] to
    /// refuse before it opens.
    #[cfg(unix)]
    #[must_use]
    pub fn if_not_regular(st_mode: u32) -> Option<Self> {
        sys::kind_from_mode(st_mode).map(Self::NotRegularFile)
    }
}

/// How a [`Lock`](crate::Lock) finds its lock file.
///
/// [`lock_file`](crate::lock_file) opens a path on the real filesystem. A host
/// that confines its users to some directories, like the WebAssembly plugin
/// host, opens beneath a directory capability instead, through
/// [`Lock::with_opener`](crate::Lock::with_opener).
pub trait Opener: Send + Sync + 'static {
    /// Opens the lock file for locking, creating it (mode 0666 before umask)
    /// if it is missing and creating is allowed, and never truncating it.
    ///
    /// The open must not block (use `O_NONBLOCK` and `O_NOCTTY`, and set
    /// close-on-exec) and must not open anything but a regular file where it
    /// can tell beforehand: report [`OpenError::NotRegularFile`] instead.
    ///
    /// # Errors
    ///
    /// [`OpenError`], as described there.
    fn open(&self) -> Result<File, OpenError>;

    /// The identity of the file the name refers to now, resolved as
    /// [`open`](Self::open) resolves it, or `None` if nothing is there.
    ///
    /// A handle calls this after each acquire, to find out whether the lock
    /// file was deleted or replaced while it waited.
    ///
    /// # Errors
    ///
    /// Any error from the operating system other than the file being missing.
    fn identify(&self) -> io::Result<Option<FileId>>;
}

/// The default [`Opener`]: a path on the real filesystem.
#[derive(Debug)]
pub(crate) struct PathOpener(pub(crate) PathBuf);

impl Opener for PathOpener {
    fn open(&self) -> Result<File, OpenError> {
        // Refuse special files before opening them: opening a device can have
        // side effects. The check after opening covers a swap in between.
        if let Ok(meta) = std::fs::metadata(&self.0)
            && let Some(kind) = sys::non_regular_kind(&meta)
        {
            return Err(OpenError::NotRegularFile(kind));
        }
        Ok(sys::open(&self.0)?)
    }

    fn identify(&self) -> io::Result<Option<FileId>> {
        Ok(sys::path_id(&self.0)?.map(FileId))
    }
}
