//! What a guest may lock: the directories granted to it, one list that
//! configures both its WASI preopens and its file locks, and the etcd lock
//! namespaces granted beside them; guest paths resolve against both.

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

/// An etcd lock namespace made visible to the guest under a guest path, as
/// a directory is: the guest's `GUEST/deploy.lock` is the etcd lock
/// `NAMESPACE/deploy.lock`.
#[derive(Debug)]
pub struct LockNamespace {
    session: locket_etcd::Session,
    namespace: String,
    guest: String,
    guest_parts: Normal,
}

impl LockNamespace {
    /// The etcd name the guest's locks live under.
    #[must_use]
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The path under which the guest sees it, in normal form.
    #[must_use]
    pub fn guest(&self) -> &str {
        &self.guest
    }

    /// The session its locks are taken in.
    #[must_use]
    pub fn session(&self) -> &locket_etcd::Session {
        &self.session
    }
}

/// What a guest path resolved to.
#[derive(Debug)]
pub(crate) enum Target {
    /// A lock file beneath a granted directory.
    File(GrantOpener),
    /// An etcd lock in a granted namespace.
    Etcd {
        session: locket_etcd::Session,
        name: String,
    },
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
    /// The etcd namespace cannot name locks (see
    /// [`locket_etcd::check_name`]).
    #[error("invalid etcd lock namespace {namespace:?}: {reason}")]
    Namespace {
        /// The namespace as given.
        namespace: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The guest path is granted as a directory and as a lock namespace
    /// both, so a path beneath it would name two locks.
    #[error("{guest:?} is granted both as a directory and as an etcd lock namespace")]
    Overlap {
        /// The guest path, in normal form.
        guest: String,
    },
    /// Two etcd lock namespaces are granted under the same guest path.
    #[error("{guest:?} is granted as two etcd lock namespaces")]
    TwoNamespaces {
        /// The guest path, in normal form.
        guest: String,
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
    namespaces: Vec<LockNamespace>,
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
        let guest_parts = guest_path(guest).map_err(|reason| GrantError::GuestPath {
            host: host.clone(),
            guest: guest.to_owned(),
            reason,
        })?;
        // WASI matches preopens by their text, and locks by the normal form:
        // give both the normal form, so that they agree.
        let guest = guest_parts.text();
        if self.namespaces.iter().any(|n| n.guest_parts == guest_parts) {
            return Err(GrantError::Overlap { guest });
        }
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

    /// Grants the guest the etcd lock namespace `namespace` of `session`'s
    /// cluster under the guest path `guest`: `lock-file("GUEST/a.lock")`
    /// names the etcd lock `NAMESPACE/a.lock`, and no file is touched. A
    /// guest path resolves against directories and namespaces alike, the
    /// longest prefix winning; names stay confined to their namespace as
    /// paths to their directory. The guest cannot open files there.
    ///
    /// # Errors
    ///
    /// [`GrantError::Namespace`] if `namespace` cannot name locks (empty,
    /// absolute, `.` or `..` components, NUL, too long),
    /// [`GrantError::GuestPath`] for a bad guest path as in
    /// [`grant`](Self::grant), [`GrantError::Overlap`] if a directory is
    /// granted under the very same guest path, and
    /// [`GrantError::TwoNamespaces`] if another namespace is.
    pub fn grant_locks(
        &mut self,
        session: &locket_etcd::Session,
        namespace: &str,
        guest: &str,
    ) -> Result<&mut Self, GrantError> {
        let guest_parts = self.check_locks(namespace, guest)?;
        self.namespaces.push(LockNamespace {
            session: session.clone(),
            namespace: namespace.to_owned(),
            guest: guest_parts.text(),
            guest_parts,
        });
        Ok(self)
    }

    /// Checks what [`grant_locks`](Self::grant_locks) would check, without
    /// a session: so that a command can refuse a bad grant before it
    /// connects to a cluster.
    ///
    /// # Errors
    ///
    /// As [`grant_locks`](Self::grant_locks).
    pub fn check_lock_grant(&self, namespace: &str, guest: &str) -> Result<(), GrantError> {
        self.check_locks(namespace, guest).map(|_| ())
    }

    fn check_locks(&self, namespace: &str, guest: &str) -> Result<Normal, GrantError> {
        locket_etcd::check_name(namespace).map_err(|e| GrantError::Namespace {
            namespace: namespace.to_owned(),
            reason: match e {
                locket_etcd::Error::InvalidName { reason, .. } => reason,
                _ => "it cannot name etcd locks",
            },
        })?;
        let guest_parts = guest_path(guest).map_err(|reason| GrantError::GuestPath {
            host: PathBuf::from(namespace),
            guest: guest.to_owned(),
            reason,
        })?;
        if self.grants.iter().any(|g| g.guest_parts == guest_parts) {
            return Err(GrantError::Overlap {
                guest: guest_parts.text(),
            });
        }
        if self.namespaces.iter().any(|n| n.guest_parts == guest_parts) {
            return Err(GrantError::TwoNamespaces {
                guest: guest_parts.text(),
            });
        }
        Ok(guest_parts)
    }

    /// The directory grants, in the order they were made.
    pub fn iter(&self) -> impl Iterator<Item = &Grant> {
        self.grants.iter()
    }

    /// The etcd lock namespaces, in the order they were granted.
    pub fn namespaces(&self) -> impl Iterator<Item = &LockNamespace> {
        self.namespaces.iter()
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

    /// Resolves a guest path lexically: the directory grant or lock
    /// namespace with the longest prefix of it, and the rest of the path
    /// beneath that.
    pub(crate) fn resolve(&self, path: &str) -> Result<Target, PathError> {
        let normal = Normal::parse(path)?;
        let dir = self
            .grants
            .iter()
            .filter(|g| g.guest_parts.contains(&normal))
            .max_by_key(|g| g.guest_parts.parts.len());
        let namespace = self
            .namespaces
            .iter()
            .filter(|n| n.guest_parts.contains(&normal))
            .max_by_key(|n| n.guest_parts.parts.len());
        match (dir, namespace) {
            (Some(g), Some(n)) if n.guest_parts.parts.len() > g.guest_parts.parts.len() => {
                Self::in_namespace(n, &normal)
            }
            (None, Some(n)) => Self::in_namespace(n, &normal),
            (Some(g), _) => Ok(Target::File(Self::in_dir(g, &normal))),
            (None, None) => Err(PathError::OutsideGrants),
        }
    }

    fn in_dir(grant: &Grant, normal: &Normal) -> GrantOpener {
        let rest = &normal.parts[grant.guest_parts.parts.len()..];
        let relative = if rest.is_empty() {
            PathBuf::from(".")
        } else {
            rest.iter().collect()
        };
        GrantOpener {
            dir: Arc::clone(&grant.dir),
            relative,
            may_create: grant.access == Access::ReadWrite,
        }
    }

    fn in_namespace(namespace: &LockNamespace, normal: &Normal) -> Result<Target, PathError> {
        let rest = &normal.parts[namespace.guest_parts.parts.len()..];
        if rest.is_empty() {
            return Err(PathError::Text(
                "the path names the lock namespace itself, not a lock in it",
            ));
        }
        let name = format!("{}/{}", namespace.namespace, rest.join("/"));
        match locket_etcd::check_name(&name) {
            Ok(()) => Ok(Target::Etcd {
                session: namespace.session.clone(),
                name,
            }),
            Err(locket_etcd::Error::InvalidName { reason, .. }) => Err(PathError::Text(reason)),
            Err(_) => Err(PathError::Text("it cannot name an etcd lock")),
        }
    }
}

/// A guest path for a grant, in normal form, or why it cannot be one.
fn guest_path(guest: &str) -> Result<Normal, &'static str> {
    // A trailing slash, as tab completion adds, means nothing here.
    let trimmed = guest.trim_end_matches('/');
    Normal::parse(if trimmed.is_empty() && !guest.is_empty() {
        "/"
    } else {
        trimmed
    })
    .map_err(|e| match e {
        PathError::OutsideGrants => "`..` climbs above the directory relative paths start from",
        e => e.reason(),
    })
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
        match g.resolve(path)? {
            Target::File(opener) => Ok(opener.relative),
            Target::Etcd { .. } => panic!("{path:?} resolved to an etcd lock"),
        }
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
                if let Ok(Target::File(opener)) = grants.resolve(&path) {
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
