//! The replaced-file check on its fast path: a lock file whose change time
//! has settled is vouched for by one `fstat` of the descriptor a handle
//! keeps, so these tests age their files first. Every way of making the path
//! name another file must still be noticed: the handle then locks the file
//! the path names now, never the one nobody else can see.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use locket::{LockError, Mode, lock_file};

mod common;

use common::{PROMPT, TRY_ONCE, is_free, scratch};

/// How old a change time must be for the fast path, with a margin (the
/// crate's own figure is 2 s).
const SETTLED: Duration = Duration::from_millis(2100);

/// Waits until every one of `paths` (not following symlinks) last changed
/// at least [`SETTLED`] ago. This ages the files, so that a handle may
/// trust their change times; it is not a wait for some other thread.
fn age(paths: &[PathBuf]) {
    for path in paths {
        let changed = {
            use std::os::unix::fs::MetadataExt;
            let meta = fs::symlink_metadata(path).unwrap();
            SystemTime::UNIX_EPOCH
                + Duration::new(
                    meta.ctime().try_into().unwrap(),
                    meta.ctime_nsec().try_into().unwrap(),
                )
        };
        if let Ok(left) = (changed + SETTLED).duration_since(SystemTime::now()) {
            thread::sleep(left);
        }
    }
}

/// One way of making `path` name a file other than the one it named.
struct Change {
    name: &'static str,
    /// Makes the lock file's neighbours, before the files are aged.
    prepare: fn(&Path, &Path),
    /// Makes the change.
    change: fn(&Path, &Path),
}

const CHANGES: &[Change] = &[
    Change {
        name: "deleted",
        prepare: |_, _| {},
        change: |_, path| fs::remove_file(path).unwrap(),
    },
    Change {
        name: "renamed over",
        prepare: |_, _| {},
        change: |dir, path| {
            fs::write(dir.join("new"), "").unwrap();
            fs::rename(dir.join("new"), path).unwrap();
        },
    },
    Change {
        name: "renamed away",
        prepare: |_, _| {},
        change: |dir, path| fs::rename(path, dir.join("old")).unwrap(),
    },
    Change {
        name: "one of its two hard links deleted",
        prepare: |dir, path| fs::hard_link(path, dir.join("alias")).unwrap(),
        change: |_, path| fs::remove_file(path).unwrap(),
    },
    Change {
        name: "renamed over while another hard link keeps it",
        prepare: |dir, path| fs::hard_link(path, dir.join("alias")).unwrap(),
        change: |dir, path| {
            fs::write(dir.join("new"), "").unwrap();
            fs::rename(dir.join("new"), path).unwrap();
        },
    },
];

/// A lock file for each change, made and aged together.
fn aged_cases() -> Vec<(&'static Change, tempfile::TempDir, PathBuf)> {
    let cases: Vec<_> = CHANGES
        .iter()
        .map(|change| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("x.lock");
            fs::write(&path, "").unwrap();
            (change.prepare)(dir.path(), &path);
            (change, dir, path)
        })
        .collect();
    age(&cases
        .iter()
        .map(|(_, _, path)| path.clone())
        .collect::<Vec<_>>());
    cases
}

#[test]
fn every_change_to_a_settled_lock_files_names_is_noticed() {
    for (change, dir, path) in aged_cases() {
        let name = change.name;
        let cached = lock_file(&path);
        // The first check resolves the path and trusts the settled file; the
        // second takes the fast path.
        for _ in 0..2 {
            cached.acquire().unwrap();
            cached.release().unwrap();
        }
        (change.change)(dir.path(), &path);
        let fresh = lock_file(&path);
        fresh.acquire().unwrap(); // the file the path names now
        assert!(
            matches!(
                cached.acquire_with(Mode::Exclusive, TRY_ONCE),
                Err(LockError::Timeout { .. })
            ),
            "{name}: the handle locked the file it had open, not the path's"
        );
        fresh.release().unwrap();
        cached.acquire_with(Mode::Exclusive, TRY_ONCE).unwrap();
        assert!(!is_free(&path, Mode::Exclusive), "{name}");
        cached.release().unwrap();
    }
}

#[test]
fn a_settled_lock_file_replaced_while_a_handle_waits_is_noticed() {
    for (change, dir, path) in aged_cases() {
        let name = change.name;
        let waiter = lock_file(&path);
        waiter.acquire().unwrap();
        waiter.release().unwrap(); // trusts the file, and keeps it open
        let holder = lock_file(&path);
        holder.acquire().unwrap();
        let (tx, rx) = mpsc::channel();
        // Detached, so that a wait that never ends fails the test, not hangs it.
        thread::spawn(move || {
            let result = waiter.acquire();
            tx.send((result, waiter)).unwrap();
        });
        let started = Instant::now();
        while locket::waiters(&path).unwrap().is_empty() {
            assert!(
                started.elapsed() < PROMPT,
                "{name}: the waiter never waited"
            );
            thread::yield_now();
        }
        (change.change)(dir.path(), &path);
        // The waiter gets the old file, sees that the path names another,
        // and locks that one instead (creating it if the path names nothing).
        holder.release().unwrap();
        let (result, waiter) = rx.recv_timeout(PROMPT).expect("the waiter hung");
        result.unwrap();
        assert!(
            !is_free(&path, Mode::Exclusive),
            "{name}: it holds a file nobody can see"
        );
        waiter.release().unwrap();
    }
}

#[test]
fn a_lock_path_through_a_symlink_is_resolved_on_every_acquire() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    fs::write(&first, "").unwrap();
    fs::write(&second, "").unwrap();
    let link = dir.path().join("x.lock");
    std::os::unix::fs::symlink(&first, &link).unwrap();
    age(&[first.clone(), second.clone(), link.clone()]);
    let cached = lock_file(&link);
    for _ in 0..2 {
        cached.acquire().unwrap();
        cached.release().unwrap();
    }
    // Pointing the symlink elsewhere changes nothing about `first`.
    let retarget = dir.path().join("retarget");
    std::os::unix::fs::symlink(&second, &retarget).unwrap();
    fs::rename(&retarget, &link).unwrap();
    let fresh = lock_file(&second);
    fresh.acquire().unwrap();
    assert!(matches!(
        cached.acquire_with(Mode::Exclusive, TRY_ONCE),
        Err(LockError::Timeout { .. })
    ));
    fresh.release().unwrap();
    cached.acquire().unwrap();
    assert!(!is_free(&second, Mode::Exclusive));
    assert!(is_free(&first, Mode::Exclusive));
}

#[test]
fn writing_to_a_settled_lock_file_keeps_it_the_lock() {
    // A write sets the change time: the handle resolves the path again and
    // finds the same file, which it goes on locking.
    let (_dir, path) = scratch();
    fs::write(&path, "").unwrap();
    age(std::slice::from_ref(&path));
    let lock = lock_file(&path);
    for round in 0..3 {
        lock.acquire().unwrap();
        assert!(!is_free(&path, Mode::Shared), "round {round}");
        fs::write(&path, format!("{round}")).unwrap();
        lock.release().unwrap();
    }
}
