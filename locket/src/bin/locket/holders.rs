//! `locket holders`: who holds, and who waits for, the lock on a file.
//!
//! The kernel lists every lock in `/proc/locks`, naming the file by device and
//! inode and the holder by the pid that took it. As `lslocks` does, a lock is
//! matched by inode, and by device where the numbers agree; where they do not
//! (overlayfs and btrfs report other device numbers there than `stat` does),
//! the holder is confirmed by finding the file among its open descriptors.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// One line of `/proc/locks` about our file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// `exclusive` or `shared`.
    pub mode: &'static str,
    /// `holding` or `waiting`.
    pub state: &'static str,
    /// `flock`, `posix` or `ofd`: which kind of lock.
    pub kind: String,
    /// The command name from `/proc/PID/comm`.
    pub command: String,
}

/// Everyone who holds or waits for a lock on the file at `path`.
pub fn holders(path: &Path) -> std::io::Result<Vec<Holder>> {
    let meta = fs::metadata(path)?;
    let (ino, dev) = (meta.ino(), meta.dev());
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let mut found = Vec::new();
    for line in fs::read_to_string("/proc/locks")?.lines() {
        let mut words: Vec<&str> = line.split_whitespace().skip(1).collect();
        let waiting = words.first() == Some(&"->");
        if waiting {
            words.remove(0);
        }
        // KIND ADVISORY|MANDATORY READ|WRITE PID MAJ:MIN:INO START END
        let [kind, _, access, pid, id, ..] = words.as_slice() else {
            continue;
        };
        let mut parts = id.split(':');
        let (Some(maj), Some(min), Some(i)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let (Ok(maj), Ok(min), Ok(i), Ok(pid)) = (
            u32::from_str_radix(maj, 16),
            u32::from_str_radix(min, 16),
            i.parse::<u64>(),
            pid.parse::<u32>(),
        ) else {
            continue;
        };
        if i != ino {
            continue;
        }
        if (maj, min) != (major, minor) && !has_open(pid, ino, dev) {
            continue;
        }
        found.push(Holder {
            pid,
            mode: if *access == "WRITE" {
                "exclusive"
            } else {
                "shared"
            },
            state: if waiting { "waiting" } else { "holding" },
            kind: match *kind {
                "FLOCK" => "flock",
                "POSIX" => "posix",
                "OFDLCK" => "ofd",
                other => other,
            }
            .to_ascii_lowercase(),
            command: fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| c.trim().to_owned())
                .unwrap_or_else(|_| "?".to_owned()),
        });
    }
    Ok(found)
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

/// The holders as a table for people.
pub fn table(path: &Path, holders: &[Holder]) -> String {
    if holders.is_empty() {
        return format!("{}: not locked\n", path.display());
    }
    let mut out = format!(
        "{:<8} {:<10} {:<8} {:<6} COMMAND\n",
        "PID", "MODE", "STATE", "KIND"
    );
    for h in holders {
        let _ = writeln!(
            out,
            "{:<8} {:<10} {:<8} {:<6} {}",
            h.pid, h.mode, h.state, h.kind, h.command
        );
    }
    out
}

/// The holders as a JSON array of objects.
pub fn json(holders: &[Holder]) -> String {
    let items: Vec<String> = holders
        .iter()
        .map(|h| {
            format!(
                "{{\"pid\":{},\"mode\":\"{}\",\"state\":\"{}\",\"kind\":{},\"command\":{}}}",
                h.pid,
                h.mode,
                h.state,
                json_string(&h.kind),
                json_string(&h.command)
            )
        })
        .collect();
    format!("[{}]\n", items.join(","))
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
