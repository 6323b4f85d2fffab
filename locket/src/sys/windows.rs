//! Windows: a file's identity is its (volume serial, file index), which
//! hard links share.

use std::fs::{File, Metadata};
use std::io;
use std::os::windows::io::AsRawHandle;
use std::path::Path;

use windows_sys::Win32::Storage::FileSystem::{
    BY_HANDLE_FILE_INFORMATION, GetFileInformationByHandle,
};

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

/// What an open file's metadata says about its names. Windows has no
/// cheap equivalent of a link count and change time here, so there is none,
/// and every check resolves the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stamp {}

impl Stamp {
    pub(crate) fn unlinked(self) -> bool {
        match self {}
    }

    pub(crate) fn settled(self) -> bool {
        match self {}
    }
}

/// Always `None` on Windows: see [`Stamp`].
#[allow(clippy::unnecessary_wraps, reason = "the Unix version can fail")]
pub(crate) fn stamp(_file: &File) -> io::Result<Option<Stamp>> {
    Ok(None)
}
