//! Windows: LockFileEx through std, identity by (volume serial, file index).
//!
//! A timed wait polls with backoff: a synchronous LockFileEx cannot be given a
//! deadline.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::windows::io::AsRawHandle;
use std::path::Path;
use std::time::Instant;

use windows_sys::Win32::Storage::FileSystem::{
    BY_HANDLE_FILE_INFORMATION, GetFileInformationByHandle,
};

use crate::Mode;

/// What makes two paths the same lock: the volume and the file index on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FileId {
    volume: u32,
    index: u64,
}

/// The identity of the open `file`.
pub(crate) fn file_id(file: &File, _meta: &Metadata) -> io::Result<FileId> {
    // SAFETY: an all-zero BY_HANDLE_FILE_INFORMATION is valid plain data, and
    // the handle stays open for the duration of the call.
    unsafe {
        let mut info: BY_HANDLE_FILE_INFORMATION = std::mem::zeroed();
        if GetFileInformationByHandle(file.as_raw_handle(), &mut info) == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(FileId {
            volume: info.dwVolumeSerialNumber,
            index: (u64::from(info.nFileIndexHigh) << 32) | u64::from(info.nFileIndexLow),
        })
    }
}

/// The identity of the file `path` names now, or `None` if nothing is there.
pub(crate) fn path_id(path: &Path) -> io::Result<Option<FileId>> {
    match File::open(path) {
        Ok(file) => {
            let meta = file.metadata()?;
            file_id(&file, &meta).map(Some)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// A name for what `meta` describes if it is not a regular file.
pub(crate) fn non_regular_kind(meta: &Metadata) -> Option<&'static str> {
    if meta.is_file() {
        None
    } else if meta.is_dir() {
        Some("directory")
    } else {
        Some("special file")
    }
}

/// Opens (creating if missing) the lock file at `path`, never truncating it.
pub(crate) fn open(path: &Path) -> io::Result<File> {
    match OpenOptions::new().read(true).open(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path),
        other => other,
    }
}

/// Waits for `mode` on `file` until `deadline`, polling.
pub(crate) fn lock_until(file: &File, mode: Mode, deadline: Instant) -> io::Result<bool> {
    super::poll_until(file, mode, Some(deadline), None)
}

/// Waits for `mode` on `file` until `deadline` (if any) or until `cancel` is
/// cancelled, polling; returns whether it got the lock.
pub(crate) fn lock_cancellable(
    file: &File,
    mode: Mode,
    deadline: Option<Instant>,
    cancel: &super::Cancel,
) -> io::Result<bool> {
    super::poll_until(file, mode, deadline, Some(cancel))
}
