//! `locket holders`: who holds, and who waits for, the flock lock on a file.
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

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A holder of, or a waiter for, the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// `exclusive` or `shared`.
    pub mode: &'static str,
    /// `holding` or `waiting`.
    pub state: &'static str,
    /// The command name from `/proc/PID/comm`.
    pub command: String,
}

/// One flock lock line: waiting?, exclusive?, pid, device (major, minor), inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FlockLine {
    waiting: bool,
    exclusive: bool,
    pid: i64,
    device: (u32, u32),
    inode: u64,
}

/// Parses a `/proc/locks` line, or the part of an fdinfo `lock:` line after
/// the tab; `None` for anything but a flock lock.
fn parse(line: &str) -> Option<FlockLine> {
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

/// Everyone who holds or waits for the flock lock on the file at `path`.
pub fn holders(path: &Path) -> std::io::Result<Vec<Holder>> {
    let meta = fs::metadata(path)?;
    let (ino, dev) = (meta.ino(), meta.dev());
    let device = (libc::major(dev), libc::minor(dev));
    let mut found: Vec<Holder> = Vec::new();
    let mut add = |pid: u32, exclusive: bool, waiting: bool| {
        let holder = Holder {
            pid,
            mode: if exclusive { "exclusive" } else { "shared" },
            state: if waiting { "waiting" } else { "holding" },
            command: command(pid),
        };
        if !found.contains(&holder) {
            found.push(holder);
        }
    };
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
                if line.waiting || line.inode != ino {
                    continue;
                }
                let fd = proc_entry.path().join("fd").join(fdinfo.file_name());
                let same_file = line.device == device
                    || fs::metadata(&fd).is_ok_and(|m| m.ino() == ino && m.dev() == dev);
                if same_file {
                    add(pid, line.exclusive, false);
                }
            }
        }
    }
    // Waiters: the blocked requests in /proc/locks name their process.
    for line in fs::read_to_string("/proc/locks")?.lines().filter_map(parse) {
        if line.waiting
            && line.inode == ino
            && let Ok(pid) = u32::try_from(line.pid)
            && pid > 0
            && (line.device == device || has_open(pid, ino, dev))
        {
            add(pid, line.exclusive, true);
        }
    }
    Ok(found)
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

/// The holders as a table for people; control characters in command names
/// are escaped.
pub fn table(path: &Path, holders: &[Holder]) -> String {
    if holders.is_empty() {
        return format!("{}: not locked\n", path.display());
    }
    let mut out = format!("{:<8} {:<10} {:<8} COMMAND\n", "PID", "MODE", "STATE");
    for h in holders {
        let command: String = h.command.chars().flat_map(char::escape_default).collect();
        let _ = writeln!(out, "{:<8} {:<10} {:<8} {command}", h.pid, h.mode, h.state);
    }
    out
}

/// The holders as a JSON array of objects.
pub fn json(holders: &[Holder]) -> String {
    let items: Vec<String> = holders
        .iter()
        .map(|h| {
            format!(
                "{{\"pid\":{},\"mode\":\"{}\",\"state\":\"{}\",\"command\":{}}}",
                h.pid,
                h.mode,
                h.state,
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn json_escapes_quotes_backslashes_and_controls() {
        let h = Holder {
            pid: 1,
            mode: "shared",
            state: "holding",
            command: "a\"b\\c\n".into(),
        };
        assert_eq!(
            json(&[h]),
            "[{\"pid\":1,\"mode\":\"shared\",\"state\":\"holding\",\"command\":\"a\\\"b\\\\c\\u000a\"}]\n"
        );
    }
}
