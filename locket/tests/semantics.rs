//! locket's semantics within one process: handles, threads, modes, identity,
//! groups, and what happens to the lock file.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use locket::{LockError, LockGroup, Mode, lock_file};

mod common;

use common::{PROMPT, TRY_ONCE, is_free, scratch};

fn assert_busy(path: impl AsRef<Path>, mode: Mode) {
    let path = path.as_ref();
    assert!(
        !is_free(path, mode),
        "expected {} to be busy",
        path.display()
    );
}

fn assert_free(path: impl AsRef<Path>, mode: Mode) {
    let path = path.as_ref();
    assert!(
        is_free(path, mode),
        "expected {} to be free",
        path.display()
    );
}

#[test]
fn acquire_then_release_round_trips() {
    let (_dir, path) = scratch();
    let lock = lock_file(&path);
    assert!(!lock.is_locked());
    lock.acquire().unwrap();
    assert!(lock.is_locked());
    assert_eq!(lock.mode(), Some(Mode::Exclusive));
    assert_busy(&path, Mode::Exclusive);
    lock.release().unwrap();
    assert!(!lock.is_locked());
    assert_free(&path, Mode::Exclusive);
    // The handle is reusable.
    lock.acquire().unwrap();
    assert_busy(&path, Mode::Shared);
}

#[test]
fn release_of_unlocked_lock_is_an_error() {
    let (_dir, path) = scratch();
    let lock = lock_file(&path);
    assert!(matches!(lock.release(), Err(LockError::NotLocked { .. })));
    lock.acquire().unwrap();
    lock.release().unwrap();
    let err = lock.release().unwrap_err();
    assert!(matches!(err, LockError::NotLocked { ref path } if path.ends_with("x.lock")));
    assert!(err.to_string().contains("does not hold"), "{err}");
}

#[test]
fn release_by_a_handle_that_does_not_hold_is_an_error_even_if_another_does() {
    let (_dir, path) = scratch();
    let holder = lock_file(&path);
    let other = lock_file(&path);
    holder.acquire().unwrap();
    assert!(matches!(other.release(), Err(LockError::NotLocked { .. })));
    // ... and the holder still holds it.
    assert!(holder.is_locked());
    assert_busy(&path, Mode::Exclusive);
}

#[test]
fn acquiring_twice_on_one_handle_is_an_error_in_either_mode() {
    let (_dir, path) = scratch();
    for (first, second) in [
        (Mode::Exclusive, Mode::Exclusive),
        (Mode::Exclusive, Mode::Shared),
        (Mode::Shared, Mode::Shared),
        (Mode::Shared, Mode::Exclusive),
    ] {
        let lock = lock_file(&path);
        lock.acquire_with(first, None).unwrap();
        let started = Instant::now();
        // With no timeout: it must fail at once, not wait.
        let err = lock.acquire_with(second, None).unwrap_err();
        assert!(started.elapsed() < PROMPT);
        assert!(matches!(err, LockError::AlreadyLocked { .. }), "{err:?}");
        // No silent conversion: the original mode is kept.
        assert_eq!(lock.mode(), Some(first));
    }
}

#[test]
fn same_path_twice_in_one_process_conflicts() {
    let (_dir, path) = scratch();
    let first = lock_file(&path);
    first.acquire().unwrap();
    assert_busy(&path, Mode::Exclusive);
    assert_busy(&path, Mode::Shared);
}

#[test]
fn every_spelling_of_a_file_is_the_same_lock() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("sub");
    fs::create_dir(&sub).unwrap();
    let path = dir.path().join("x.lock");
    let holder = lock_file(&path);
    holder.acquire().unwrap();

    let symlink = dir.path().join("symlink.lock");
    let hardlink = dir.path().join("hardlink.lock");
    std::os::unix::fs::symlink(&path, &symlink).unwrap();
    fs::hard_link(&path, &hardlink).unwrap();
    let relative_to_cwd = pathdiff(&path);
    for spelling in [
        path.clone(),
        sub.join("..").join("x.lock"),
        dir.path().join(".").join("x.lock"),
        symlink.clone(),
        hardlink.clone(),
        relative_to_cwd,
    ] {
        assert_busy(&spelling, Mode::Exclusive);
    }
    holder.release().unwrap();
    // And each spelling excludes the original.
    for spelling in [symlink, hardlink] {
        let other = lock_file(&spelling);
        other.acquire().unwrap();
        assert_busy(&path, Mode::Shared);
    }
}

/// `path` spelled relative to the current directory, through `./` and `..`s.
fn pathdiff(path: &Path) -> PathBuf {
    let cwd = std::env::current_dir().unwrap();
    let mut relative = PathBuf::from(".");
    for _ in cwd.components().skip(1) {
        relative.push("..");
    }
    relative.join(path.strip_prefix("/").unwrap())
}

#[test]
fn shared_locks_coexist_and_exclude_exclusive_ones() {
    let (_dir, path) = scratch();
    let a = lock_file(&path);
    let b = lock_file(&path);
    a.acquire_shared().unwrap();
    b.acquire_with(Mode::Shared, TRY_ONCE).unwrap();
    assert_busy(&path, Mode::Exclusive);
    a.release().unwrap();
    assert_busy(&path, Mode::Exclusive);
    b.release().unwrap();
    assert_free(&path, Mode::Exclusive);

    a.acquire().unwrap();
    assert_busy(&path, Mode::Shared);
}

#[test]
fn any_thread_may_release_the_lock_a_handle_holds() {
    let (_dir, path) = scratch();
    let lock = lock_file(&path);
    lock.acquire().unwrap();
    thread::scope(|s| {
        s.spawn(|| lock.release().unwrap()).join().unwrap();
    });
    assert!(!lock.is_locked());
    assert_free(&path, Mode::Exclusive);
}

#[test]
fn a_waiting_handle_gets_the_lock_when_another_thread_releases() {
    let (_dir, path) = scratch();
    for timeout in [None, Some(PROMPT * 3)] {
        let holder = lock_file(&path);
        holder.acquire().unwrap();
        let (tx, rx) = mpsc::channel();
        let waiter_path = path.clone();
        let waiter = thread::spawn(move || {
            let lock = lock_file(waiter_path).with_timeout(timeout);
            let result = lock.acquire();
            tx.send(()).unwrap();
            result.map(|()| lock)
        });
        // The waiter must not get in while the holder holds.
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
        holder.release().unwrap();
        rx.recv_timeout(PROMPT).expect("waiter was not woken");
        let lock = waiter.join().unwrap().unwrap();
        assert!(lock.is_locked());
        assert_busy(&path, Mode::Exclusive);
    }
}

#[test]
fn zero_timeout_fails_at_once() {
    let (_dir, path) = scratch();
    let holder = lock_file(&path);
    holder.acquire().unwrap();
    let lock = lock_file(&path).with_timeout(TRY_ONCE);
    let started = Instant::now();
    let err = lock.acquire().unwrap_err();
    assert!(started.elapsed() < PROMPT);
    assert!(matches!(err, LockError::Timeout { .. }));
    assert!(err.to_string().contains("held elsewhere"), "{err}");
    assert!(!lock.is_locked());
}

#[test]
fn a_timeout_expires_neither_early_nor_very_late() {
    let (_dir, path) = scratch();
    let holder = lock_file(&path);
    holder.acquire().unwrap();
    for mode in [Mode::Exclusive, Mode::Shared] {
        let timeout = Duration::from_millis(200);
        let (tx, rx) = mpsc::channel();
        let waiter_path = path.clone();
        // In a thread, so that a wait that never ends fails the test, not hangs it.
        thread::spawn(move || {
            let lock = lock_file(waiter_path).with_timeout(Some(timeout));
            let started = Instant::now();
            let result = match mode {
                Mode::Exclusive => lock.acquire(),
                Mode::Shared => lock.acquire_shared(),
            };
            tx.send((result, started.elapsed(), lock.is_locked()))
                .unwrap();
        });
        let (result, waited, locked) = rx
            .recv_timeout(timeout + PROMPT)
            .expect("the timeout did not end the wait");
        let err = result.unwrap_err();
        assert!(matches!(err, LockError::Timeout { timeout: t, .. } if t == timeout));
        assert!(waited >= timeout, "gave up early, after {waited:?}");
        assert!(!locked);
    }
    // A timed-out waiter left nothing held behind.
    holder.release().unwrap();
    assert_free(&path, Mode::Exclusive);
}

#[test]
fn the_guard_releases_on_drop_and_on_unlock() {
    let (_dir, path) = scratch();
    let lock = lock_file(&path);
    {
        let guard = lock.lock().unwrap();
        assert_eq!(guard.mode(), Mode::Exclusive);
        assert_busy(&path, Mode::Shared);
    }
    assert!(!lock.is_locked());
    assert_free(&path, Mode::Exclusive);
    let guard = lock.lock_shared().unwrap();
    assert_busy(&path, Mode::Exclusive);
    guard.unlock().unwrap();
    assert_free(&path, Mode::Exclusive);
}

#[test]
fn dropping_a_handle_releases_its_lock() {
    let (_dir, path) = scratch();
    let lock = lock_file(&path);
    lock.acquire().unwrap();
    assert_busy(&path, Mode::Exclusive);
    drop(lock);
    assert_free(&path, Mode::Exclusive);
}

#[test]
fn a_group_reports_self_deadlock_at_once() {
    let (_dir, path) = scratch();
    let group = LockGroup::new();
    let a = group.lock_file(&path);
    let b = group.lock_file(&path);
    a.acquire().unwrap();
    // No timeout: a plain handle would wait forever here.
    let started = Instant::now();
    let err = b.acquire().unwrap_err();
    assert!(started.elapsed() < PROMPT);
    assert!(matches!(err, LockError::Deadlock { .. }), "{err:?}");
    assert!(matches!(
        b.acquire_shared(),
        Err(LockError::Deadlock { .. })
    ));
    // Through another spelling too.
    let link = path.with_file_name("link.lock");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    let c = group.lock_file(&link);
    assert!(matches!(c.acquire(), Err(LockError::Deadlock { .. })));

    // Shared holds in one group do not conflict; an exclusive request does.
    a.release().unwrap();
    a.acquire_shared().unwrap();
    b.acquire_shared().unwrap();
    assert!(matches!(c.acquire(), Err(LockError::Deadlock { .. })));
    a.release().unwrap();
    assert!(matches!(c.acquire(), Err(LockError::Deadlock { .. })));
    b.release().unwrap();
    c.acquire().unwrap();
    // Dropping a holding handle forgets its hold.
    drop(c);
    a.acquire().unwrap();
}

#[test]
fn a_group_still_waits_for_holders_outside_it() {
    let (_dir, path) = scratch();
    let outsider = lock_file(&path);
    outsider.acquire().unwrap();
    let group = LockGroup::new();
    let member = group
        .lock_file(&path)
        .with_timeout(Some(Duration::from_millis(100)));
    assert!(matches!(member.acquire(), Err(LockError::Timeout { .. })));
    outsider.release().unwrap();
    member.acquire().unwrap();
    // Another group's handles are outsiders too.
    let other_group = LockGroup::new();
    let other = other_group.lock_file(&path).with_timeout(TRY_ONCE);
    assert!(matches!(other.acquire(), Err(LockError::Timeout { .. })));
}

#[test]
fn lock_file_touches_nothing_until_the_first_acquire() {
    let (_dir, path) = scratch();
    let lock = lock_file(&path);
    assert!(!path.exists());
    lock.acquire().unwrap();
    assert!(path.is_file());
    lock.release().unwrap();
    drop(lock);
    assert!(path.is_file(), "the lock file must never be deleted");
}

#[test]
fn the_lock_files_contents_are_untouched() {
    let (_dir, path) = scratch();
    fs::write(&path, b"pid 1234\nkeep me").unwrap();
    let lock = lock_file(&path);
    lock.acquire().unwrap();
    let shared = lock_file(&path);
    lock.release().unwrap();
    shared.acquire_shared().unwrap();
    drop(shared);
    drop(lock);
    assert_eq!(fs::read(&path).unwrap(), b"pid 1234\nkeep me");
}

#[test]
fn a_read_only_lock_file_can_still_be_locked() {
    let (_dir, path) = scratch();
    fs::write(&path, b"").unwrap();
    let mut perms = fs::metadata(&path).unwrap().permissions();
    perms.set_readonly(true);
    fs::set_permissions(&path, perms).unwrap();
    let lock = lock_file(&path);
    lock.acquire().unwrap();
    assert_busy(&path, Mode::Shared);
}

#[test]
fn a_missing_parent_is_an_error_not_a_mkdir() {
    let dir = tempfile::tempdir().unwrap();
    let parent = dir.path().join("no-such-dir");
    let lock = lock_file(parent.join("x.lock"));
    let err = lock.acquire().unwrap_err();
    assert!(matches!(err, LockError::MissingParent { .. }), "{err:?}");
    assert!(
        err.to_string().contains("parent directory does not exist"),
        "{err}"
    );
    assert!(!parent.exists());
}

#[test]
fn only_regular_files_are_locked() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    for (path, kind) in [
        (fifo.as_path(), "FIFO"),
        (dir.path(), "directory"),
        (Path::new("/dev/null"), "character device"),
    ] {
        // No timeout: if opening or locking could block, this would hang.
        let err = lock_file(path).acquire().unwrap_err();
        match &err {
            LockError::NotRegularFile { kind: k, .. } => assert_eq!(*k, kind),
            other => panic!("{}: expected NotRegularFile, got {other:?}", path.display()),
        }
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
}

#[test]
fn empty_and_nul_paths_are_invalid() {
    for path in ["", "bad\0name.lock"] {
        let err = lock_file(path).acquire().unwrap_err();
        assert!(matches!(err, LockError::InvalidPath { .. }), "{err:?}");
    }
}

#[test]
fn a_replaced_lock_file_is_reopened_rather_than_locked_in_secret() {
    let (_dir, path) = scratch();
    let cached = lock_file(&path);
    cached.acquire().unwrap();
    cached.release().unwrap(); // keeps its descriptor on the old file
    fs::remove_file(&path).unwrap();
    let fresh = lock_file(&path);
    fresh.acquire().unwrap(); // creates and locks a new file at the path
    // Locking the old, unlinked file would succeed; the path's file is held.
    assert!(matches!(
        cached.acquire_with(Mode::Exclusive, TRY_ONCE),
        Err(LockError::Timeout { .. })
    ));
    fresh.release().unwrap();
    cached.acquire_with(Mode::Exclusive, TRY_ONCE).unwrap();
    assert_busy(&path, Mode::Exclusive);
}

#[test]
fn handles_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<locket::Lock>();
    check::<LockGroup>();
}

#[test]
fn a_guard_never_releases_a_later_hold_of_its_handle() {
    let (_dir, path) = scratch();
    let lock = lock_file(&path);
    let guard = lock.lock().unwrap();
    lock.release().unwrap(); // behind the guard's back
    lock.acquire().unwrap(); // a new hold
    drop(guard);
    assert!(
        lock.is_locked(),
        "the guard released a hold it did not make"
    );
    assert_busy(&path, Mode::Shared);
    lock.release().unwrap();

    let guard = lock.lock_shared().unwrap();
    lock.release().unwrap();
    lock.acquire().unwrap();
    assert!(matches!(guard.unlock(), Err(LockError::NotLocked { .. })));
    assert!(lock.is_locked());
}

#[test]
fn a_handle_does_not_wait_on_a_lock_file_that_was_deleted_meanwhile() {
    let (_dir, path) = scratch();
    let cached = lock_file(&path);
    cached.acquire().unwrap();
    cached.release().unwrap(); // keeps its descriptor on this file
    let old_holder = lock_file(&path);
    old_holder.acquire().unwrap(); // holds the old file...
    fs::remove_file(&path).unwrap(); // ...which nobody can name any more
    let (tx, rx) = mpsc::channel();
    // Detached, so that a wait that never ends fails the test, not hangs it.
    thread::spawn(move || {
        let result = cached.acquire();
        tx.send((result, cached)).unwrap();
    });
    // No timeout: waiting on the old file would never end.
    let (result, cached) = rx.recv_timeout(PROMPT).expect("waited on the deleted file");
    result.unwrap();
    assert!(path.exists());
    assert_busy(&path, Mode::Exclusive);
    // In a group, the stale file is no reason to report a deadlock either.
    let group = LockGroup::new();
    let a = group.lock_file(&path);
    let b = group.lock_file(&path);
    drop(cached);
    a.acquire().unwrap();
    a.release().unwrap(); // `a` keeps the current file open
    b.acquire().unwrap();
    fs::remove_file(&path).unwrap();
    let fresh = lock_file(&path);
    fresh.acquire().unwrap();
    fresh.release().unwrap();
    // `a`'s file is the deleted one that `b` holds; the path's file is free.
    a.acquire_with(Mode::Exclusive, TRY_ONCE).unwrap();
}

/// With the replaced-file check off, a handle goes on locking the file it
/// opened first, even after the path names another file: the trade-off the
/// check exists for.
#[test]
fn without_the_replacement_check_a_replaced_file_is_not_noticed() {
    let (dir, path) = scratch();
    let unchecked = lock_file(&path).with_replacement_check(false);
    unchecked.acquire().unwrap();
    unchecked.release().unwrap();
    let fresh = dir.path().join("fresh");
    fs::write(&fresh, "").unwrap();
    fs::rename(&fresh, &path).unwrap();
    unchecked.acquire().unwrap();
    // It holds the old, unlinked file, so the path's file is free.
    assert_free(&path, Mode::Exclusive);
    unchecked.release().unwrap();
    // With the check (the default), the handle follows the path.
    let checked = lock_file(&path);
    checked.acquire().unwrap();
    checked.release().unwrap();
    fs::write(&fresh, "").unwrap();
    fs::rename(&fresh, &path).unwrap();
    checked.acquire().unwrap();
    assert_busy(&path, Mode::Exclusive);
}
