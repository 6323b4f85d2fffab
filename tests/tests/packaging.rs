//! What users install: the crates, the Python wheel and the npm tarball
//! carry the repository's own WIT, unchanged; every crate and both packages
//! carry one release version, which each command prints; and the wheel
//! leaves the name `locket` to locket.py.
//!
//! The wheel and the tarball are the ones `scripts/prepare-tests.sh` built
//! (`scripts/dist.sh`) and installed, which the other tests build their
//! plugins with; the crates are packaged here, without verification
//! (`scripts/check-install.sh` verifies and installs them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use locket_tests::{dist, host_exe, locket_exe, root};

/// Every file beneath `dir`, by its path relative to `dir`, with its bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, files: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            // Follows links, as every packager here does.
            if path.is_dir() {
                walk(base, &path, files);
            } else {
                let relative = path.strip_prefix(base).unwrap().to_path_buf();
                files.insert(relative, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(dir, dir, &mut files);
    files
}

/// How the tree at `copy` differs from the tree at `source`: one line per
/// missing, extra or changed file; empty if they are the same.
fn differences(source: &Path, copy: &Path) -> Vec<String> {
    let (source, copy) = (tree(source), tree(copy));
    let mut found = Vec::new();
    for (path, bytes) in &source {
        match copy.get(path) {
            None => found.push(format!("missing: {}", path.display())),
            Some(copied) if copied != bytes => found.push(format!("changed: {}", path.display())),
            Some(_) => {}
        }
    }
    for path in copy.keys().filter(|path| !source.contains_key(*path)) {
        found.push(format!("extra: {}", path.display()));
    }
    found
}

/// Fails, naming each difference, unless `copy` is the repository's `wit/`.
fn assert_is_the_wit(copy: &Path, what: &str) {
    let found = differences(&root().join("wit"), copy);
    assert!(
        found.is_empty(),
        "the WIT in {what} ({}) differs from wit/:\n  {}",
        copy.display(),
        found.join("\n  ")
    );
}

/// Runs `command`, failing the test with its stderr unless it succeeds, and
/// gives its stdout.
fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The cargo that runs this test (`$CARGO`), in the checkout.
fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(root());
    command
}

/// Unpacks the gzipped tarball `file` (a `.crate` or an npm tarball) into
/// `into`.
fn untar(file: &Path, into: &Path) {
    run(Command::new("tar")
        .arg("-xzf")
        .arg(file)
        .arg("-C")
        .arg(into));
}

/// A package of the workspace, as `cargo metadata` describes it.
struct Package {
    name: String,
    version: String,
    publish: bool,
}

/// The packages of the workspace.
fn packages() -> Vec<Package> {
    let text = run(cargo().args(["metadata", "--no-deps", "--format-version", "1", "--locked"]));
    let metadata: serde_json::Value = serde_json::from_str(&text).unwrap();
    metadata["packages"]
        .as_array()
        .expect("cargo metadata lists packages")
        .iter()
        .map(|p| Package {
            name: p["name"].as_str().unwrap().to_owned(),
            version: p["version"].as_str().unwrap().to_owned(),
            // `publish = false` is an empty list of registries.
            publish: p["publish"].as_array().is_none_or(|r| !r.is_empty()),
        })
        .collect()
}

/// The package that a WIT file declares, like `locket:lock@0.1.1`.
fn wit_package(file: &str) -> String {
    let wit = std::fs::read_to_string(root().join(file)).unwrap();
    wit.lines()
        .find_map(|l| l.strip_prefix("package "))
        .and_then(|rest| rest.strip_suffix(';'))
        .unwrap_or_else(|| panic!("{file} names no package"))
        .to_owned()
}

/// The version of `name` in the workspace's Cargo.lock.
fn locked_version(name: &str) -> String {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).unwrap();
    let entry = format!("name = \"{name}\"\nversion = \"");
    let at = lock.find(&entry).expect("the package is in Cargo.lock") + entry.len();
    lock[at..].split('"').next().unwrap().to_owned()
}

#[test]
fn a_changed_missing_or_extra_file_is_a_difference() {
    let copy = tempfile::tempdir().unwrap();
    let wit = copy.path().join("wit");
    for (path, bytes) in tree(&root().join("wit")) {
        let to = wit.join(path);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, bytes).unwrap();
    }
    assert!(differences(&root().join("wit"), &wit).is_empty());
    std::fs::write(wit.join("locket.wit"), "package locket:lock@9.9.9;\n").unwrap();
    std::fs::remove_file(wit.join("deps/io.wit")).unwrap();
    std::fs::write(wit.join("deps/extra.wit"), "").unwrap();
    assert_eq!(
        differences(&root().join("wit"), &wit),
        [
            "missing: deps/io.wit",
            "changed: locket.wit",
            "extra: deps/extra.wit"
        ]
    );
}

#[test]
fn the_crates_carry_a_license_a_readme_and_the_repositorys_wit() {
    let scratch = tempfile::tempdir().unwrap();
    let mut package = cargo();
    package
        // Offline: the build that runs this test has fetched everything.
        .args(["package", "--no-verify", "--allow-dirty", "--locked"])
        .args(["--offline", "--quiet", "--target-dir"])
        .arg(scratch.path().join("target"));
    let published: Vec<Package> = packages().into_iter().filter(|p| p.publish).collect();
    for crate_ in &published {
        package.args(["-p", &crate_.name]);
    }
    run(&mut package);
    for crate_ in &published {
        let (name, version) = (&crate_.name, &crate_.version);
        let file = scratch
            .path()
            .join(format!("target/package/{name}-{version}.crate"));
        untar(&file, scratch.path());
        let unpacked = scratch.path().join(format!("{name}-{version}"));
        for file in ["LICENSE", "README.md"] {
            assert!(
                unpacked.join(file).is_file(),
                "the crate {name} has no {file}"
            );
        }
        // The crates whose bindings are generated from the WIT carry it.
        if ["locket-host", "locket-guest"].contains(&name.as_str()) {
            assert_is_the_wit(&unpacked.join("wit"), &format!("the crate {name}"));
        }
    }
}

#[test]
fn the_wheel_carries_the_repositorys_wit_and_no_top_level_locket() {
    let wheel = dist::wheel();
    let unpacked = tempfile::tempdir().unwrap();
    run(Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(&wheel)
        .arg(unpacked.path()));
    assert_is_the_wit(&unpacked.path().join("locket_guest/wit"), "the wheel");
    // Only the package and its metadata at the top: no module `locket`
    // that would shadow locket.py where the wheel is installed.
    let top: Vec<String> = std::fs::read_dir(unpacked.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "locket_guest")
        .collect();
    assert_eq!(
        top,
        [format!("locket_guest-{}.dist-info", dist::VERSION)],
        "the wheel installs more than locket_guest"
    );
    // Where both are installed, `import locket` is locket.py.
    let python = locket_tests::venv_python().expect(".venv (./test.sh makes it)");
    let found = run(Command::new(python).args([
        "-c",
        "import locket, locket_guest; print(locket.__file__); print(locket_guest.__file__)",
    ]));
    let lines: Vec<&str> = found.lines().collect();
    assert!(
        lines[0].ends_with("site-packages/locket/__init__.py")
            && !lines[0].contains("locket_guest"),
        "`import locket` found {}, not locket.py",
        lines[0]
    );
}

#[test]
fn the_npm_tarball_carries_the_repositorys_wit() {
    let unpacked = tempfile::tempdir().unwrap();
    untar(&dist::npm_tarball(), unpacked.path());
    assert_is_the_wit(&unpacked.path().join("package/wit"), "the npm tarball");
    assert!(
        unpacked
            .path()
            .join("package/npm-shrinkwrap.json")
            .is_file()
    );
}

#[test]
fn every_crate_and_package_carries_the_one_release_version() {
    let packages = packages();
    let version = packages[0].version.clone();
    for package in &packages {
        assert_eq!(
            package.version, version,
            "{} is at {}, the workspace's first package at {version}",
            package.name, package.version
        );
    }
    // The workspace's own crates depend on each other at exactly it.
    let workspace = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    for line in workspace.lines().filter(|l| l.starts_with("locket-")) {
        assert!(
            line.contains(&format!("version = \"={version}\"")),
            "{line}: not at ={version}"
        );
    }
    let python =
        std::fs::read_to_string(root().join("guest-python/locket_guest/__init__.py")).unwrap();
    assert!(
        python.contains(&format!("__version__ = \"{version}\"")),
        "guest-python's __version__ is not {version}"
    );
    for file in ["guest-js/package.json", "guest-js/npm-shrinkwrap.json"] {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        let found = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("\"version\": "))
            .map(|v| v.trim_end_matches(',').trim_matches('"'));
        assert_eq!(found, Some(version.as_str()), "the version in {file}");
    }
    let changelog = std::fs::read_to_string(root().join("CHANGELOG.md")).unwrap();
    assert!(
        changelog
            .lines()
            .any(|l| l.starts_with(&format!("## {version} "))),
        "CHANGELOG.md has no entry for {version}"
    );
}

#[test]
fn each_command_prints_the_release_version() {
    let version = dist::VERSION;
    let wit = wit_package("wit/locket.wit");
    let wasi = wit_package("wit/deps/cli.wit");
    let wasi = wasi.strip_prefix("wasi:cli@").unwrap();
    let host = run(Command::new(host_exe()).arg("--version"));
    let wasmtime = locked_version("wasmtime");
    assert!(
        host.starts_with(&format!("locket-host {version} ({wit} "))
            && host.contains(&format!("WASI {wasi},"))
            && host.contains(&format!("wasmtime {wasmtime})")),
        "locket-host --version: {host}"
    );
    let locket = run(Command::new(locket_exe()).arg("--version"));
    assert_eq!(locket.trim(), format!("locket {version}"));
    let py = run(Command::new(dist::locket_py()).arg("--version"));
    assert_eq!(
        py.trim(),
        format!("locket-py {version} ({wit}, componentize-py 0.25.1)")
    );
    let js = run(Command::new(dist::locket_js()).arg("--version"));
    assert_eq!(
        js.trim(),
        format!("locket-js {version} ({wit}, componentize-js 0.23.0)")
    );
}
