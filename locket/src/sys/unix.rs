//! Unix: a file's identity is its (device, inode), its kind comes from
//! `st_mode`, and its link count and change time tell whether its names
//! changed.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

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

/// What an open file's own metadata says about its names, read with one
/// `fstat` and no path walk: how many names it has, and when its inode last
/// changed. Deleting the file or renaming another over it drops its link
/// count to 0; every rename, link and unlink of it (and every write to it)
/// sets its change time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    links: u64,
    changed: (i64, i64),
}

/// How old a change time must be before a later change is sure to set a
/// different one. Filesystems keep change times to a clock tick, or to the
/// second (ext4 with small inodes, HFS+), so a change within the same tick
/// or second could leave the time as it was.
const SETTLED: Duration = Duration::from_secs(2);

impl Stamp {
    /// Whether the file has no name left: deleted, or renamed over.
    pub(crate) fn unlinked(self) -> bool {
        self.links == 0
    }

    /// Whether the change time is old enough that any later change to the
    /// file's names will show as a different stamp.
    pub(crate) fn settled(self) -> bool {
        let (secs, nanos) = self.changed;
        let Ok(secs) = u64::try_from(secs) else {
            return false;
        };
        let changed =
            SystemTime::UNIX_EPOCH + Duration::new(secs, u32::try_from(nanos).unwrap_or(0));
        SystemTime::now()
            .duration_since(changed)
            .is_ok_and(|age| age >= SETTLED)
    }
}

/// The stamp of an open file (one `fstat`).
pub(crate) fn stamp(file: &File) -> io::Result<Option<Stamp>> {
    let meta = file.metadata()?;
    Ok(Some(Stamp {
        links: meta.nlink(),
        changed: (meta.ctime(), meta.ctime_nsec()),
    }))
}
