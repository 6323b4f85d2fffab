//! How a handle finds its lock file: the [`Opener`] trait, the one way every
//! opener opens a lock file ([`open_lock_file`]), and the default opener, a
//! path on the real filesystem.

use std::ffi::OsStr;
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
    /// The name cannot name a lock file at all; the payload says why (see
    /// [`invalid_path_reason`]).
    #[error("invalid lock path: {0}")]
    InvalidPath(&'static str),
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

/// Why the text of `path` cannot name a lock file anywhere: it is empty, or
/// it contains a NUL byte. `None` if neither.
///
/// The default opener checks native paths with it, and the WebAssembly host
/// checks guest paths with it, so that each path is checked once, in the
/// layer that receives it, with the same words.
#[must_use]
pub fn invalid_path_reason(path: &OsStr) -> Option<&'static str> {
    if path.is_empty() {
        Some("the path is empty")
    } else if path.as_encoded_bytes().contains(&0) {
        Some("the path contains a NUL byte")
    } else {
        None
    }
}

/// How a lock file is opened by each of the two opens of [`open_lock_file`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenStep {
    /// Open the file that is there, read-only, as flock(1) does, so that a
    /// lock file we may read but not write can still be locked.
    Existing,
    /// Create the missing file: write-only, mode [`CREATE_MODE`] before
    /// umask, never truncating.
    Create,
}

/// The flags every lock-file open adds on Unix: `O_NONBLOCK` and
/// `O_NOCTTY`, so that a FIFO or terminal that appears at the path can
/// neither block the open nor become our controlling terminal. (Opens must
/// also be close-on-exec, which std and cap-std add themselves.)
#[cfg(unix)]
pub const OPEN_FLAGS: i32 = libc::O_NONBLOCK | libc::O_NOCTTY;

/// The mode of a lock file we create, before the umask, as flock(1) uses.
#[cfg(unix)]
pub const CREATE_MODE: u32 = 0o666;

impl OpenStep {
    /// std's open options for this step, with [`OPEN_FLAGS`] and
    /// [`CREATE_MODE`] on Unix.
    #[must_use]
    pub fn std_options(self) -> std::fs::OpenOptions {
        let mut options = std::fs::OpenOptions::new();
        match self {
            OpenStep::Existing => options.read(true),
            OpenStep::Create => options.write(true).create(true).truncate(false),
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(CREATE_MODE).custom_flags(OPEN_FLAGS);
        }
        options
    }
}

/// Opens a lock file the one way every opener should: the file that is
/// there, read-only; else, if `may_create`, a new one ([`OpenStep`] says how
/// each open is made). `open` makes one open as its step says, through
/// whatever the opener opens with: a path, a directory capability.
///
/// # Errors
///
/// The error of the last open: `NotFound` if the file is missing and may not
/// be created, or its directory is missing.
pub fn open_lock_file(
    may_create: bool,
    mut open: impl FnMut(OpenStep) -> io::Result<File>,
) -> io::Result<File> {
    match open(OpenStep::Existing) {
        Err(e) if may_create && e.kind() == io::ErrorKind::NotFound => open(OpenStep::Create),
        other => other,
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
    /// if it is missing and creating is allowed, and never truncating it:
    /// [`open_lock_file`] does that.
    ///
    /// The open must not block (use [`OPEN_FLAGS`], and set close-on-exec)
    /// and must not open anything but a regular file where it can tell
    /// beforehand: report [`OpenError::NotRegularFile`] instead.
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

    /// Whether the name reaches its file through no symbolic link, so that
    /// only a change to the file's own names (which sets its change time)
    /// can make the name refer to another file.
    ///
    /// When this is `true`, a handle skips [`identify`](Self::identify)
    /// after an acquire if one `fstat` of the file it holds shows that
    /// nothing about the file changed since `identify` last found it at the
    /// name (see [`Lock::with_replacement_check`](crate::Lock::with_replacement_check)).
    /// The default, `false`, resolves the name on every acquire. It is asked
    /// at most once per opened file.
    fn reaches_without_symlinks(&self) -> bool {
        false
    }
}

/// The default [`Opener`]: a path on the real filesystem.
#[derive(Debug)]
pub(crate) struct PathOpener(pub(crate) PathBuf);

impl Opener for PathOpener {
    fn open(&self) -> Result<File, OpenError> {
        if let Some(reason) = invalid_path_reason(self.0.as_os_str()) {
            return Err(OpenError::InvalidPath(reason));
        }
        // Refuse special files before opening them: opening a device can have
        // side effects. The check after opening covers a swap in between.
        if let Ok(meta) = std::fs::metadata(&self.0)
            && let Some(kind) = sys::non_regular_kind(&meta)
        {
            return Err(OpenError::NotRegularFile(kind));
        }
        Ok(open_lock_file(true, |step| {
            step.std_options().open(&self.0)
        })?)
    }

    fn identify(&self) -> io::Result<Option<FileId>> {
        Ok(sys::path_id(&self.0)?.map(FileId))
    }

    fn reaches_without_symlinks(&self) -> bool {
        // The resolved path is the path as written only if no component of
        // it is a symlink (`..` makes them differ too, which is only
        // cautious).
        let (Ok(written), Ok(resolved)) =
            (std::path::absolute(&self.0), std::fs::canonicalize(&self.0))
        else {
            return false;
        };
        written.components().eq(resolved.components())
    }
}
