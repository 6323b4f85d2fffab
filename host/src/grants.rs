//! The directories granted to a guest: one list that configures both its
//! WASI preopens and its locks, and resolves guest paths against them.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::grant_opener::GrantOpener;
use crate::guest_path::{Normal, PathError};

/// What a guest may do under a granted directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Lock existing files only; a missing lock file is `access-denied`.
    ReadOnly,
    /// Lock files, creating them when they are missing.
    ReadWrite,
}

/// One host directory made visible to the guest under a guest path.
#[derive(Debug)]
pub struct Grant {
    host: PathBuf,
    guest: String,
    guest_parts: Normal,
    access: Access,
    dir: Arc<Dir>,
}

impl Grant {
    /// The directory on the host.
    #[must_use]
    pub fn host(&self) -> &Path {
        &self.host
    }

    /// The path under which the guest sees it, in normal form.
    #[must_use]
    pub fn guest(&self) -> &str {
        &self.guest
    }

    /// What the guest may do under it.
    #[must_use]
    pub fn access(&self) -> Access {
        self.access
    }
}

/// Why a directory could not be granted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GrantError {
    /// The host directory could not be opened (missing, not a directory,
    /// no permission, ...).
    #[error("cannot grant {}: {source}", host.display())]
    Open {
        /// The host directory.
        host: PathBuf,
        /// Why it could not be opened.
        #[source]
        source: io::Error,
    },
    /// The guest path is empty, contains NUL, ends in a slash, or climbs above
    /// a relative root with `..`.
    #[error("invalid guest path {guest:?} for {}: {reason}", host.display())]
    GuestPath {
        /// The host directory.
        host: PathBuf,
        /// The guest path.
        guest: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// wasmtime-wasi refused the preopen.
    #[error("cannot preopen {}: {message}", host.display())]
    Preopen {
        /// The host directory.
        host: PathBuf,
        /// wasmtime-wasi's message.
        message: String,
    },
}

/// The directories a guest may reach, configuring both its WASI filesystem
/// (preopens) and its locks, so that the two can never disagree.
///
/// ```no_run
/// use locket_host::{Access, Grants};
///
/// # fn main() -> Result<(), locket_host::GrantError> {
/// let mut grants = Grants::new();
/// grants.grant("/srv/shared", "/data", Access::ReadWrite)?;
/// grants.grant("/etc/app", "/config", Access::ReadOnly)?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Default)]
pub struct Grants {
    grants: Vec<Grant>,
}

impl Grants {
    /// No directories at all: every path is `access-denied`.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Grants the host directory `host` to the guest as `guest` (for example
    /// `/data`, or `.` for the directory that relative paths resolve against).
    ///
    /// # Errors
    ///
    /// [`GrantError::Open`] if `host` is not a directory that can be opened,
    /// [`GrantError::GuestPath`] if `guest` is empty, contains NUL, ends in a
    /// slash or climbs above a relative root with `..`. Other spellings are
    /// normalised (`./data` and `data/.` are `data`, `//x/../data` is
    /// `/data`), and the WASI preopen gets the same normal form.
    pub fn grant(
        &mut self,
        host: impl AsRef<Path>,
        guest: &str,
        access: Access,
    ) -> Result<&mut Self, GrantError> {
        let host = host.as_ref().to_path_buf();
        let bad = |reason| GrantError::GuestPath {
            host: host.clone(),
            guest: guest.to_owned(),
            reason,
        };
        // A trailing slash, as tab completion adds, means nothing here.
        let trimmed = guest.trim_end_matches('/');
        let guest_parts = Normal::parse(if trimmed.is_empty() && !guest.is_empty() {
            "/"
        } else {
            trimmed
        })
        .map_err(|e| match e {
            PathError::OutsideGrants => {
                bad("`..` climbs above the directory relative paths start from")
            }
            e => bad(e.reason()),
        })?;
        // WASI matches preopens by their text, and locks by the normal form:
        // give both the normal form, so that they agree.
        let guest = guest_parts.text();
        let dir = Dir::open_ambient_dir(&host, ambient_authority()).map_err(|source| {
            GrantError::Open {
                host: host.clone(),
                source,
            }
        })?;
        self.grants.push(Grant {
            host,
            guest,
            guest_parts,
            access,
            dir: Arc::new(dir),
        });
        Ok(self)
    }

    /// The grants, in the order they were made.
    pub fn iter(&self) -> impl Iterator<Item = &Grant> {
        self.grants.iter()
    }

    /// Preopens every grant in a WASI context, with the same access.
    ///
    /// # Errors
    ///
    /// [`GrantError::Preopen`] if wasmtime-wasi cannot open a directory.
    pub fn add_to_wasi(&self, builder: &mut WasiCtxBuilder) -> Result<(), GrantError> {
        for g in &self.grants {
            let perms = match g.access {
                Access::ReadOnly => FsPerms::ReadOnly,
                Access::ReadWrite => FsPerms::ReadWrite,
            };
            builder
                .preopened_dir(&g.host, &g.guest, perms)
                .map_err(|e| GrantError::Preopen {
                    host: g.host.clone(),
                    message: e.to_string(),
                })?;
        }
        Ok(())
    }

    /// Resolves a guest path lexically: the grant it falls under and the path
    /// relative to that grant's directory.
    pub(crate) fn resolve(&self, path: &str) -> Result<GrantOpener, PathError> {
        let normal = Normal::parse(path)?;
        let grant = self
            .grants
            .iter()
            .filter(|g| g.guest_parts.contains(&normal))
            .max_by_key(|g| g.guest_parts.parts.len())
            .ok_or(PathError::OutsideGrants)?;
        let rest = &normal.parts[grant.guest_parts.parts.len()..];
        let relative = if rest.is_empty() {
            PathBuf::from(".")
        } else {
            rest.iter().collect()
        };
        Ok(GrantOpener {
            dir: Arc::clone(&grant.dir),
            relative,
            may_create: grant.access == Access::ReadWrite,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(list: &[&str]) -> (tempfile::TempDir, Grants) {
        let dir = tempfile::tempdir().unwrap();
        let mut g = Grants::new();
        for guest in list {
            g.grant(dir.path(), guest, Access::ReadWrite).unwrap();
        }
        (dir, g)
    }

    fn resolved(g: &Grants, path: &str) -> Result<PathBuf, PathError> {
        g.resolve(path).map(|o| o.relative)
    }

    #[test]
    fn prefixes_match_whole_components_and_the_longest_wins() {
        let (_d, g) = grants(&["/data", "/data/sub", "."]);
        assert_eq!(resolved(&g, "/data/x.lock"), Ok("x.lock".into()));
        assert_eq!(resolved(&g, "/data/sub/x.lock"), Ok("x.lock".into()));
        assert_eq!(resolved(&g, "/data/subway/x"), Ok("subway/x".into()));
        assert_eq!(resolved(&g, "/database/x"), Err(PathError::OutsideGrants));
        assert_eq!(resolved(&g, "x.lock"), Ok("x.lock".into()));
        assert_eq!(resolved(&g, "./a//b/./x"), Ok("a/b/x".into()));
        assert_eq!(resolved(&g, "/data"), Ok(".".into()));
    }

    #[test]
    fn dot_dot_is_resolved_lexically_and_cannot_climb_out() {
        let (_d, g) = grants(&["/data", "."]);
        assert_eq!(resolved(&g, "/data/sub/../x"), Ok("x".into()));
        assert_eq!(
            resolved(&g, "/data/../etc/passwd"),
            Err(PathError::OutsideGrants)
        );
        assert_eq!(resolved(&g, "../x"), Err(PathError::OutsideGrants));
        assert_eq!(resolved(&g, "a/../../x"), Err(PathError::OutsideGrants));
        assert_eq!(resolved(&g, "/../../data/x"), Ok("x".into()));
    }

    #[test]
    fn bad_text_is_refused() {
        let (_d, g) = grants(&["/"]);
        assert_eq!(resolved(&g, ""), Err(PathError::Text("the path is empty")));
        assert_eq!(
            resolved(&g, "/a\0b"),
            Err(PathError::Text("the path contains a NUL byte"))
        );
        assert_eq!(resolved(&g, "/x.lock/"), Err(PathError::TrailingSlash));
        assert_eq!(resolved(&g, "/"), Ok(".".into()));
        assert_eq!(resolved(&g, "relative"), Err(PathError::OutsideGrants));
    }

    mod generated {
        use super::*;
        use locket::Opener;
        use proptest::prelude::*;

        /// Names that path components and symlink targets are drawn from.
        const NAMES: &[&str] = &["a", "b", "x.lock", ".", "..", "l1", "l2", "l3", "fifo", ""];
        const TARGETS: &[&str] = &[
            "a",
            "x.lock",
            "a/x.lock",
            "..",
            "../x.lock",
            "../outside/secret.lock",
            "../../etc/passwd",
            "/etc/passwd",
            "l1",
            "l2",
            "a/../../outside",
            "b/../x.lock",
        ];

        fn path_strategy() -> impl Strategy<Value = String> {
            (
                any::<bool>(),
                prop::collection::vec(prop::sample::select(NAMES), 0..6),
            )
                .prop_map(|(absolute, parts)| {
                    let joined = parts.join("/");
                    if absolute {
                        format!("/data/{joined}")
                    } else {
                        joined
                    }
                })
        }

        fn layout_strategy() -> impl Strategy<Value = Vec<(&'static str, &'static str)>> {
            prop::collection::vec(
                (
                    prop::sample::select(&["l1", "l2", "l3", "a/l1", "b"][..]),
                    prop::sample::select(TARGETS),
                ),
                0..5,
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Whatever the path and the symlinks, an open either fails or
            /// yields a regular file beneath the granted directory.
            #[test]
            fn every_open_is_beneath_the_grant_or_an_error(
                layout in layout_strategy(),
                path in path_strategy(),
            ) {
                let top = tempfile::tempdir().unwrap();
                let grant = top.path().join("grant");
                let outside = top.path().join("outside");
                std::fs::create_dir_all(grant.join("a")).unwrap();
                std::fs::create_dir_all(&outside).unwrap();
                std::fs::write(outside.join("secret.lock"), "secret").unwrap();
                std::fs::write(grant.join("x.lock"), "").unwrap();
                for (link, target) in &layout {
                    let _ = std::os::unix::fs::symlink(target, grant.join(link));
                }
                let before = std::fs::read_dir(&outside).unwrap().count();
                let mut grants = Grants::new();
                grants.grant(&grant, "/data", Access::ReadWrite).unwrap();
                grants.grant(&grant, ".", Access::ReadWrite).unwrap();
                let root = std::fs::canonicalize(&grant).unwrap();
                if let Ok(opener) = grants.resolve(&path) {
                    if let Ok(file) = opener.open() {
                        use std::os::fd::AsRawFd;
                        let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).unwrap();
                        prop_assert!(real.starts_with(&root), "{path:?} opened {}", real.display());
                        prop_assert!(file.metadata().unwrap().is_file());
                    }
                    let _ = opener.identify();
                }
                prop_assert_eq!(std::fs::read_dir(&outside).unwrap().count(), before);
                prop_assert_eq!(std::fs::read_to_string(outside.join("secret.lock")).unwrap(), "secret");
            }
        }
    }

    #[test]
    fn grant_paths_are_normalised_for_wasi_and_locks_alike() {
        let (_d, g) = grants(&["/data/", "./shared", "//x/../y"]);
        let guests: Vec<&str> = g.iter().map(Grant::guest).collect();
        assert_eq!(guests, ["/data", "shared", "/y"]);
        assert_eq!(resolved(&g, "/data/x.lock"), Ok("x.lock".into()));
        assert_eq!(resolved(&g, "shared/x.lock"), Ok("x.lock".into()));
        let dir = tempfile::tempdir().unwrap();
        let err = Grants::new()
            .grant(dir.path(), "../up", Access::ReadWrite)
            .unwrap_err();
        assert!(err.to_string().contains("climbs above"), "{err}");
    }

    #[test]
    fn no_grants_means_nothing_resolves() {
        let g = Grants::new();
        assert_eq!(resolved(&g, "/x"), Err(PathError::OutsideGrants));
        assert_eq!(resolved(&g, "x"), Err(PathError::OutsideGrants));
    }
}
