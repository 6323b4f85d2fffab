//! A hostile-path corpus, run from a plugin through the real `locket-host`:
//! each path gets its documented outcome, and nothing outside the grants is
//! created, truncated or locked.

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use locket_tests::{LineProcess, guests};

/// Where a path's attempt ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// `lock-file` refuses it with this error case.
    LockFile(&'static str),
    /// `lock-file` accepts it and `acquire` fails with this error case.
    Acquire(&'static str),
    /// It is locked.
    Locked,
}

use Outcome::{Acquire, LockFile, Locked};

/// Every file under `dir` with its contents (symlinks by their target).
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            let key = e.path().display().to_string();
            if ft.is_dir() {
                stack.push(e.path());
                out.insert(key, "<dir>".into());
            } else if ft.is_symlink() {
                out.insert(
                    key,
                    format!("-> {}", std::fs::read_link(e.path()).unwrap().display()),
                );
            } else if ft.is_file() {
                out.insert(key, std::fs::read_to_string(e.path()).unwrap_or_default());
            } else {
                out.insert(key, "<special>".into());
            }
        }
    }
    out
}

#[test]
fn hostile_paths_get_their_documented_error_and_touch_nothing_outside() {
    let top = tempfile::tempdir().unwrap();
    let t = top.path();
    let (grant, ro, outside) = (t.join("grant"), t.join("ro"), t.join("outside"));
    for d in [
        &grant,
        &ro,
        &outside,
        &grant.join("sub"),
        &grant.join("nested"),
        &outside.join("dir"),
    ] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(outside.join("secret.lock"), "secret").unwrap();
    std::fs::write(ro.join("exists.lock"), "ro").unwrap();
    std::fs::write(grant.join("ok.lock"), "keep").unwrap();
    let out = |name: &str| outside.join(name);
    symlink(out("secret.lock"), grant.join("abs-link")).unwrap();
    symlink("../outside/secret.lock", grant.join("rel-link")).unwrap();
    symlink("chain2", grant.join("chain1")).unwrap();
    symlink("../outside/secret.lock", grant.join("chain2")).unwrap();
    symlink("loop2", grant.join("loop1")).unwrap();
    symlink("loop1", grant.join("loop2")).unwrap();
    symlink(
        "../outside/created-by-plugin.lock",
        grant.join("dangling-out"),
    )
    .unwrap();
    symlink(out("dir"), grant.join("dir-link-out")).unwrap();
    symlink("sub", grant.join("dir-link")).unwrap();
    std::fs::write(grant.join("target.lock"), "").unwrap();
    symlink("sub/../target.lock", grant.join("rel-link-inside")).unwrap();
    symlink("../grant/ok.lock", grant.join("out-and-back")).unwrap();
    symlink(ro.join("exists.lock"), grant.join("into-other-grant")).unwrap();
    let status = Command::new("mkfifo")
        .arg(grant.join("fifo"))
        .status()
        .unwrap();
    assert!(status.success());
    let _socket = std::os::unix::net::UnixListener::bind(grant.join("socket")).unwrap();
    let status = Command::new("mknod")
        .arg(grant.join("null"))
        .args(["c", "1", "3"])
        .status()
        .unwrap();
    assert!(status.success(), "mknod needs root (CI runs as root)");

    let long_name = format!("/data/{}.lock", "n".repeat(300));
    let deep_missing = format!("/data/{}x.lock", "d/".repeat(1500));
    let long_but_lexically_short = format!("/data/{}short.lock", "sub/../".repeat(1000));
    let corpus: Vec<(&str, Outcome)> = vec![
        // The text alone.
        ("", LockFile("invalid-path")),
        ("/data/nul\\0byte.lock", LockFile("invalid-path")),
        ("/data/x.lock/", LockFile("invalid-path")),
        ("/data/", LockFile("invalid-path")),
        (".", LockFile("access-denied")),
        ("/", LockFile("access-denied")),
        ("relative.lock", LockFile("access-denied")),
        ("../x.lock", LockFile("access-denied")),
        ("/etc/passwd", LockFile("access-denied")),
        ("/database/x.lock", LockFile("access-denied")),
        ("/datax.lock", LockFile("access-denied")),
        ("/data/..", LockFile("access-denied")),
        ("/data/../../../etc/passwd", LockFile("access-denied")),
        (
            "/data/sub/../../outside/secret.lock",
            LockFile("access-denied"),
        ),
        ("/ro/../outside/secret.lock", LockFile("access-denied")),
        // Lexically inside, and fine.
        ("/data/ok.lock", Locked),
        ("/data//double.lock", Locked),
        ("//data/leading.lock", Locked),
        ("/./data/dot.lock", Locked),
        ("/data/sub//..//back.lock", Locked),
        ("/data/../data/again.lock", Locked),
        ("/ro/../data/via-ro.lock", Locked),
        (&long_but_lexically_short, Locked),
        ("/data/.hidden.lock", Locked),
        ("/data/with\\sspace.lock", Locked),
        ("/data/new\\nline.lock", Locked),
        ("/data/ünïcödé.lock", Locked),
        ("/data/rel-link-inside", Locked),
        // What only the filesystem shows.
        ("/data", Acquire("invalid-path")),
        ("/data/.", Acquire("invalid-path")),
        ("/data/sub", Acquire("invalid-path")),
        ("/data/dir-link", Acquire("invalid-path")),
        ("/data/fifo", Acquire("invalid-path")),
        ("/data/socket", Acquire("invalid-path")),
        ("/data/null", Acquire("invalid-path")),
        ("/data/abs-link", Acquire("access-denied")),
        ("/data/rel-link", Acquire("access-denied")),
        ("/data/chain1", Acquire("access-denied")),
        ("/data/dangling-out", Acquire("access-denied")),
        ("/data/dir-link-out", Acquire("access-denied")),
        ("/data/out-and-back", Acquire("access-denied")),
        ("/data/into-other-grant", Acquire("access-denied")),
        ("/data/loop1", Acquire("io")),
        ("/data/ok.lock/under-a-file", Acquire("io")),
        ("/data/missing-dir/x.lock", Acquire("io")),
        (&long_name, Acquire("io")),
        (&deep_missing, Acquire("io")),
        // Grants: read-only, and one nested in another.
        ("/ro/exists.lock", Locked),
        ("/ro/missing.lock", Acquire("access-denied")),
        ("/ro/missing-dir/x.lock", Acquire("io")),
        ("/nested/n.lock", Locked),
    ];
    assert!(corpus.len() >= 40);

    let before = snapshot(&outside);
    let before_ro = snapshot(&ro);
    let mut plugin = LineProcess::plugin(
        &[
            &format!("--dir={}::/data", grant.display()),
            &format!("--dir-ro={}::/ro", ro.display()),
            &format!("--dir={}::/nested", grant.join("nested").display()),
        ],
        guests::LOCKER,
        &[],
    )
    .unwrap();
    let mut handles = 0;
    let mut failures = Vec::new();
    for (path, expected) in &corpus {
        plugin.send(&format!("open {path}")).unwrap();
        let answer = plugin.line_within(locket_tests::PROMPT).unwrap();
        let got = if let Some(kind) = error_kind(&answer) {
            LockFile(kind)
        } else {
            assert_eq!(answer, format!("opened {handles}"), "{path}");
            let id = handles;
            handles += 1;
            plugin.send(&format!("#{id} acquire 0")).unwrap();
            let answer = plugin.line_within(locket_tests::PROMPT).unwrap();
            match error_kind(&answer) {
                Some(kind) => Acquire(kind),
                None if answer == "acquired" => Locked,
                None => panic!("{path}: {answer}"),
            }
        };
        if got != *expected {
            failures.push(format!("{path:.80}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // One file under two grants is one lock: this instance holds it already.
    plugin.send("open /data/nested/n.lock").unwrap();
    let opened = plugin.line_within(locket_tests::PROMPT).unwrap();
    let id = opened.strip_prefix("opened ").unwrap();
    plugin
        .ask(&format!("#{id} acquire"), "error: deadlock")
        .unwrap();

    // Nothing outside the grants was created or changed, nor under the
    // read-only grant, and nothing outside is locked.
    assert_eq!(snapshot(&outside), before);
    assert_eq!(snapshot(&ro).len(), before_ro.len());
    assert!(!ro.join("missing.lock").exists());
    let mut native = LineProcess::native(&outside.join("secret.lock")).unwrap();
    native.ask("acquire 0", "acquired").unwrap();
    assert_eq!(
        std::fs::read_to_string(grant.join("ok.lock")).unwrap(),
        "keep"
    );
}

/// The error case named by an `error: KIND: ...` line.
fn error_kind(line: &str) -> Option<&'static str> {
    let kind = line.strip_prefix("error: ")?.split(':').next()?;
    [
        "timeout",
        "not-locked",
        "deadlock",
        "access-denied",
        "invalid-path",
        "limit",
        "io",
    ]
    .into_iter()
    .find(|k| *k == kind)
}
