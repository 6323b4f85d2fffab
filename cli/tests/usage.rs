//! The `locket` command's usage errors, which need neither a lock nor a
//! cluster. (The behaviour under locks is tested in `locket-tests`, which
//! runs this crate's binary; having an integration test here is also what
//! makes `cargo test --workspace` build that binary.)

use std::process::{Command, Output};

fn locket(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_locket"))
        .args(args)
        .output()
        .expect("running locket")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_bad_etcd_address_is_a_usage_error_that_names_it() {
    let out = locket(&["lock", "etcd://127.0.0.1:notaport/x", "--", "true"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("notaport"), "{}", stderr(&out));
}

#[test]
fn a_name_that_escapes_its_namespace_is_refused() {
    let out = locket(&["lock", "etcd://127.0.0.1:1/a/../b", "--", "true"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains(".."), "{}", stderr(&out));
}

#[test]
fn lease_ttl_is_refused_for_a_lock_file() {
    let dir = std::env::temp_dir().join("locket-usage-test.lock");
    let out = locket(&[
        "lock",
        "--lease-ttl",
        "5s",
        dir.to_str().unwrap(),
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--lease-ttl"), "{}", stderr(&out));
}

#[test]
fn a_missing_command_is_a_usage_error() {
    let out = locket(&["lock", "/tmp/x.lock"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("COMMAND"), "{}", stderr(&out));
}
