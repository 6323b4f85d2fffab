//! Unix: a file's identity is its (device, inode), and its kind comes from
//! `st_mode`.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What makes two paths the same lock: the file's device and inode numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    pub(crate) fn new(dev: u64, ino: u64) -> Self {
        Self { dev, ino }
    }
}

/// The identity of the file `meta` describes.
pub(crate) fn file_id(_file: &File, meta: &Metadata) -> io::Result<FileId> {
    Ok(FileId {
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

/// The identity of the file `path` names now (following symlinks), or `None`
/// if nothing is there any more.
pub(crate) fn path_id(path: &Path) -> io::Result<Option<FileId>> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Some(FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// A name for what `meta` describes if it is not a regular file.
pub(crate) fn non_regular_kind(meta: &Metadata) -> Option<&'static str> {
    kind_from_mode(meta.mode())
}

/// A name for the file type in a `st_mode` if it is not a regular file.
///
/// The `S_IF*` values are the same on every Unix (and `mode_t` is not), so
/// they are spelled out here.
pub(crate) fn kind_from_mode(mode: u32) -> Option<&'static str> {
    match mode & 0o170_000 {
        0o100_000 => None,
        0o040_000 => Some("directory"),
        0o010_000 => Some("FIFO"),
        0o140_000 => Some("socket"),
        0o020_000 => Some("character device"),
        0o060_000 => Some("block device"),
        _ => Some("special file"),
    }
}
