//! Who holds, and who waits for, the flock lock on a file. Linux only:
//! elsewhere [`holders`] and [`waiters`] return `ErrorKind::Unsupported`.
//!
//! Holders come from `/proc/PID/fdinfo/FD`, whose `lock:` lines name the
//! locks held through that very descriptor, so the process shown is the one
//! that holds the lock now, even when another process took it (`flock 9` in a
//! shell) or the taker has exited. Waiters come from the `->` lines of
//! `/proc/locks`, which name the blocked process. As with `lslocks`, a lock is
//! matched by inode, and by device where the numbers agree; where they do not
//! (overlayfs and btrfs report other device numbers there than `stat` does),
//! the descriptor's own `stat` decides. Only flock locks are listed: POSIX
//! record locks, OFD locks and leases do not conflict with them.

use std::io;
use std::path::Path;

use crate::mode::Mode;

/// A process that holds, or waits for, a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Holder {
    /// The process id.
    pub pid: u32,
    /// The mode held or asked for.
    pub mode: Mode,
    /// Whether it waits for the lock rather than holds it.
    pub waiting: bool,
    /// The command name, from `/proc/PID/comm` (`?` if it has gone).
    pub command: String,
}

/// Everyone who holds or waits for the flock lock on the file at `path`:
/// holders first, then waiters, each process and mode once.
///
/// # Errors
///
/// If `path` cannot be `stat`ed, or `/proc` cannot be read;
/// `ErrorKind::Unsupported` on platforms other than Linux.
pub fn holders(path: &Path) -> io::Result<Vec<Holder>> {
    #[cfg(target_os = "linux")]
    return linux::holders(path);
    #[cfg(not(target_os = "linux"))]
    return Err(unsupported(path));
}

/// Every request blocked waiting for the flock lock on the file at `path`,
/// one entry per waiting thread (a process may wait in several).
///
/// This reads `/proc/locks` alone, so it is cheap enough to poll.
///
/// # Errors
///
/// If `path` cannot be `stat`ed, or `/proc/locks` cannot be read;
/// `ErrorKind::Unsupported` on platforms other than Linux.
pub fn waiters(path: &Path) -> io::Result<Vec<Holder>> {
    #[cfg(target_os = "linux")]
    return linux::Target::of(path)?.waiters();
    #[cfg(not(target_os = "linux"))]
    return Err(unsupported(path));
}

#[cfg(not(target_os = "linux"))]
fn unsupported(path: &Path) -> io::Error {
    let _ = path;
    io::Error::new(
        io::ErrorKind::Unsupported,
        "listing lock holders reads Linux's /proc, which this platform does not have",
    )
}

/// The Linux implementation: `/proc/PID/fdinfo` and `/proc/locks`.
#[cfg(target_os = "linux")]
mod linux {
    use std::fs;
    use std::io;
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;

    use super::Holder;
    use crate::mode::Mode;

    pub(super) fn holders(path: &Path) -> io::Result<Vec<Holder>> {
        let file = Target::of(path)?;
        let mut found: Vec<Holder> = Vec::new();
        // Holders: the descriptors that hold a lock on the file.
        for proc_entry in fs::read_dir("/proc")?.flatten() {
            let Some(pid) = proc_entry
                .file_name()
                .to_str()
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(fdinfos) = fs::read_dir(proc_entry.path().join("fdinfo")) else {
                continue;
            };
            for fdinfo in fdinfos.flatten() {
                let Ok(text) = fs::read_to_string(fdinfo.path()) else {
                    continue;
                };
                for lock in text.lines().filter_map(|l| l.strip_prefix("lock:")) {
                    let Some(line) = parse(lock) else { continue };
                    if line.waiting || line.inode != file.ino {
                        continue;
                    }
                    let fd = proc_entry.path().join("fd").join(fdinfo.file_name());
                    let same_file = line.device == file.device
                        || fs::metadata(&fd)
                            .is_ok_and(|m| m.ino() == file.ino && m.dev() == file.dev);
                    if same_file {
                        let holder = line.holder(pid);
                        if !found.contains(&holder) {
                            found.push(holder);
                        }
                    }
                }
            }
        }
        for waiter in file.waiters()? {
            if !found.contains(&waiter) {
                found.push(waiter);
            }
        }
        Ok(found)
    }
    /// The file asked about, as `stat` names it.
    pub(super) struct Target {
        ino: u64,
        dev: u64,
        /// `dev` as (major, minor), the way `/proc/locks` writes it.
        device: (u32, u32),
    }

    impl Target {
        pub(super) fn of(path: &Path) -> io::Result<Self> {
            let meta = fs::metadata(path)?;
            let dev = meta.dev();
            Ok(Self {
                ino: meta.ino(),
                dev,
                device: (libc::major(dev), libc::minor(dev)),
            })
        }

        /// The blocked requests in `/proc/locks`, which name their process.
        pub(super) fn waiters(&self) -> io::Result<Vec<Holder>> {
            let mut found = Vec::new();
            for line in fs::read_to_string("/proc/locks")?.lines().filter_map(parse) {
                if line.waiting
                    && line.inode == self.ino
                    && let Ok(pid) = u32::try_from(line.pid)
                    && pid > 0
                    && (line.device == self.device || has_open(pid, self.ino, self.dev))
                {
                    found.push(line.holder(pid));
                }
            }
            Ok(found)
        }
    }

    /// One flock lock line: waiting?, exclusive?, pid, device (major, minor), inode.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) struct FlockLine {
        pub(super) waiting: bool,
        pub(super) exclusive: bool,
        pub(super) pid: i64,
        pub(super) device: (u32, u32),
        pub(super) inode: u64,
    }

    impl FlockLine {
        fn holder(&self, pid: u32) -> Holder {
            Holder {
                pid,
                mode: if self.exclusive {
                    Mode::Exclusive
                } else {
                    Mode::Shared
                },
                waiting: self.waiting,
                command: command(pid),
            }
        }
    }

    /// Parses a `/proc/locks` line, or the part of an fdinfo `lock:` line after
    /// the tab; `None` for anything but a flock lock.
    pub(super) fn parse(line: &str) -> Option<FlockLine> {
        // ID: [-> ...] KIND ADVISORY|MANDATORY READ|WRITE PID MAJ:MIN:INO START END
        let mut words = line.split_whitespace().skip(1).peekable();
        let mut waiting = false;
        while words.peek() == Some(&"->") {
            waiting = true;
            words.next();
        }
        let words: Vec<&str> = words.collect();
        let [kind, _, access, pid, id, ..] = words.as_slice() else {
            return None;
        };
        if *kind != "FLOCK" {
            return None;
        }
        let mut parts = id.split(':');
        let major = u32::from_str_radix(parts.next()?, 16).ok()?;
        let minor = u32::from_str_radix(parts.next()?, 16).ok()?;
        let inode = parts.next()?.parse().ok()?;
        Some(FlockLine {
            waiting,
            exclusive: *access == "WRITE",
            pid: pid.parse().ok()?,
            device: (major, minor),
            inode,
        })
    }

    fn command(pid: u32) -> String {
        fs::read(format!("/proc/{pid}/comm"))
            .map(|c| String::from_utf8_lossy(&c).trim_end().to_owned())
            .unwrap_or_else(|_| "?".to_owned())
    }

    /// Whether process `pid` has the file (`ino`, `dev`) open.
    fn has_open(pid: u32, ino: u64, dev: u64) -> bool {
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            return false;
        };
        fds.flatten()
            .filter_map(|fd| fs::metadata(fd.path()).ok())
            .any(|m| m.ino() == ino && m.dev() == dev)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::linux::*;

    #[test]
    fn only_flock_lines_are_parsed_waiters_included() {
        let held = parse("1: FLOCK  ADVISORY  WRITE 6062 fe:00:10256401 0 EOF").unwrap();
        assert_eq!(
            held,
            FlockLine {
                waiting: false,
                exclusive: true,
                pid: 6062,
                device: (0xfe, 0),
                inode: 10256401
            }
        );
        let waiter = parse("1: -> FLOCK  ADVISORY  READ 77 08:11:42 0 EOF").unwrap();
        assert!(waiter.waiting && !waiter.exclusive && waiter.device == (8, 0x11));
        assert!(
            parse("2: -> -> FLOCK  ADVISORY  WRITE 9 00:2a:7 0 EOF")
                .unwrap()
                .waiting
        );
        // The taker's pid may be 0 or -1 in the kernel's listing.
        assert_eq!(
            parse("3: FLOCK  ADVISORY  WRITE -1 00:2a:7 0 EOF")
                .unwrap()
                .pid,
            -1
        );
        for other in [
            "4: POSIX  ADVISORY  WRITE 123 fe:00:10256401 0 EOF",
            "5: OFDLCK ADVISORY  READ  -1 00:06:9 0 EOF",
            "6: LEASE  ACTIVE    READ  321 fe:00:10256401 0 EOF",
            "7: DELEG  ACTIVE    READ  321 fe:00:10256401 0 EOF",
            "8: FLOCK  ADVISORY  WRITE 5 *NOINODE* 0 EOF",
            "",
        ] {
            assert_eq!(parse(other), None, "{other}");
        }
    }
}
