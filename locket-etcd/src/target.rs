//! Where the locks live: `etcd://` addresses, and the names of locks.

use std::fmt;

use crate::error::Error;

/// The longest lock name accepted, in bytes (as `PATH_MAX`).
pub const MAX_NAME: usize = 4096;
/// The longest component of a lock name, in bytes (as `NAME_MAX`).
pub const MAX_COMPONENT: usize = 255;
/// The port of an endpoint that names none: etcd's client port.
pub const DEFAULT_PORT: u16 = 2379;

/// An etcd cluster: its client endpoints, and whether they speak TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    endpoints: Vec<String>,
    tls: bool,
}

impl Cluster {
    /// A cluster reached at `endpoints` (`HOST:PORT` each), over TLS when
    /// `tls` is true.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidAddress`] when the list is empty or an endpoint is not
    /// `HOST[:PORT]`.
    pub fn new<S: AsRef<str>>(endpoints: &[S], tls: bool) -> Result<Self, Error> {
        let text = endpoints
            .iter()
            .map(AsRef::as_ref)
            .collect::<Vec<_>>()
            .join(",");
        let bad = |reason: String| Error::InvalidAddress {
            address: text.clone(),
            reason,
        };
        if endpoints.is_empty() {
            return Err(bad("it names no endpoint".into()));
        }
        let mut list = Vec::new();
        for e in endpoints {
            list.push(endpoint(e.as_ref()).map_err(bad)?);
        }
        Ok(Self {
            endpoints: list,
            tls,
        })
    }

    /// The endpoints, as `HOST:PORT`.
    #[must_use]
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Whether the endpoints speak TLS (`etcd+https://`).
    #[must_use]
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// The endpoints as URLs, for the gRPC client.
    pub(crate) fn urls(&self) -> Vec<String> {
        let scheme = if self.tls { "https" } else { "http" };
        self.endpoints
            .iter()
            .map(|e| format!("{scheme}://{e}"))
            .collect()
    }
}

impl fmt::Display for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "etcd+https" } else { "etcd" };
        write!(f, "{scheme}://{}", self.endpoints.join(","))
    }
}

/// Checks one `HOST[:PORT]` and fills in the default port.
fn endpoint(e: &str) -> Result<String, String> {
    if e.is_empty() {
        return Err("an endpoint is empty".into());
    }
    if e.contains(['/', '@', '?', '#']) || e.chars().any(char::is_whitespace) {
        return Err(format!("{e:?} is not HOST:PORT"));
    }
    // `[v6]:port`, `[v6]`, `host:port` or `host`.
    let (host, port) = if let Some(rest) = e.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{e:?} has an unclosed `[`"))?;
        match after {
            "" => (host, None),
            p => (
                host,
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("{e:?} is not [HOST]:PORT"))?,
                ),
            ),
        }
    } else {
        match e.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (e, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{e:?} has no host"));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("{e:?} has no valid port (1 to 65535)"))?,
    };
    Ok(if e.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

/// A cluster and a name in it: `etcd://HOST:PORT[,HOST:PORT...]/NAME`, or
/// `etcd+https://...` for TLS.
///
/// For a lock, the name is the lock's; for a namespace granted to a plugin,
/// it is the namespace that the plugin's lock names are put under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The cluster.
    pub cluster: Cluster,
    /// The name after the endpoints, without the leading `/`; checked by
    /// [`check_name`].
    pub name: String,
}

impl Address {
    /// Whether `text` looks like an etcd address (has its scheme), so that a
    /// command can tell it from a file path.
    #[must_use]
    pub fn is_etcd(text: &str) -> bool {
        text.starts_with("etcd://") || text.starts_with("etcd+https://")
    }

    /// Parses `etcd://HOST:PORT[,HOST:PORT...]/NAME` or its `etcd+https://`
    /// form.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidAddress`] for a missing scheme, endpoint or name, and
    /// [`Error::InvalidName`] for a name that [`check_name`] refuses.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Error::InvalidAddress {
            address: text.to_owned(),
            reason: reason.to_owned(),
        };
        let (tls, rest) = if let Some(rest) = text.strip_prefix("etcd://") {
            (false, rest)
        } else if let Some(rest) = text.strip_prefix("etcd+https://") {
            (true, rest)
        } else {
            return Err(bad("it must start with etcd:// or etcd+https://"));
        };
        let (hosts, name) = rest
            .split_once('/')
            .ok_or_else(|| bad("it names no lock or namespace after the endpoints (`/NAME`)"))?;
        let endpoints: Vec<&str> = hosts.split(',').collect();
        let cluster = Cluster::new(&endpoints, tls).map_err(|e| match e {
            Error::InvalidAddress { reason, .. } => Error::InvalidAddress {
                address: text.to_owned(),
                reason,
            },
            e => e,
        })?;
        check_name(name)?;
        Ok(Self {
            cluster,
            name: name.to_owned(),
        })
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.cluster, self.name)
    }
}

/// Checks that `name` can name a lock (or a namespace): relative, its
/// components neither empty nor `.` nor `..`, no NUL, at most
/// [`MAX_COMPONENT`] bytes a component and [`MAX_NAME`] in all. These are
/// the rules a guest path meets, so a name cannot climb out of the
/// namespace it is put under.
///
/// # Errors
///
/// [`Error::InvalidName`], saying which rule the name breaks.
pub fn check_name(name: &str) -> Result<(), Error> {
    let bad = |reason| {
        Err(Error::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.contains('\0') {
        return bad("it contains NUL");
    }
    if name.len() > MAX_NAME {
        return bad("it is longer than 4096 bytes");
    }
    if name.starts_with('/') {
        return bad("it is absolute (starts with `/`)");
    }
    for component in name.split('/') {
        match component {
            "" => return bad("it has an empty component (`//` or a trailing `/`)"),
            "." | ".." => return bad("it has a `.` or `..` component"),
            c if c.len() > MAX_COMPONENT => {
                return bad("a component is longer than 255 bytes");
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_with_default_ports_and_tls() {
        let a = Address::parse("etcd://127.0.0.1:2379,localhost/ns/deploy.lock").unwrap();
        assert_eq!(a.cluster.endpoints(), ["127.0.0.1:2379", "localhost:2379"]);
        assert!(!a.cluster.tls());
        assert_eq!(a.name, "ns/deploy.lock");
        assert_eq!(
            a.to_string(),
            "etcd://127.0.0.1:2379,localhost:2379/ns/deploy.lock"
        );
        let t = Address::parse("etcd+https://[::1]:3000/x").unwrap();
        assert_eq!(t.cluster.urls(), ["https://[::1]:3000"]);
    }

    #[test]
    fn bad_addresses_say_what_is_wrong() {
        for (text, needle) in [
            ("http://h:1/x", "must start with"),
            ("etcd://h:1", "names no lock"),
            ("etcd:///x", "endpoint is empty"),
            ("etcd://h:0/x", "valid port"),
            ("etcd://h:99999/x", "valid port"),
            ("etcd://h:1,/x", "endpoint is empty"),
            ("etcd://user@h:1/x", "not HOST:PORT"),
        ] {
            let e = Address::parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn names_cannot_escape_or_overflow() {
        for name in [
            "",
            "/abs",
            "a/../b",
            "..",
            "a/./b",
            "a//b",
            "a/",
            "nul\0",
            &"x".repeat(256),
            &"a/".repeat(2049),
        ] {
            assert!(check_name(name).is_err(), "{name:?} was accepted");
        }
        for name in ["a", "ns/deploy.lock", "..a/b..", &"x".repeat(255)] {
            check_name(name).unwrap();
        }
    }
}
