//! How to reach a cluster: endpoints, TLS files and credentials, and the
//! environment variables that carry them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};

use crate::error::Error;
use crate::session::Session;
use crate::target::Cluster;

/// The lease TTL when none is set: 10 s.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
/// How long starting a session may take when none is set: 5 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The user name, read by [`Connect::from_env`].
pub const ENV_USER: &str = "LOCKET_ETCD_USER";
/// The password, read by [`Connect::from_env`].
pub const ENV_PASSWORD: &str = "LOCKET_ETCD_PASSWORD";
/// A file holding the password (its first line), read by [`Connect::from_env`].
pub const ENV_PASSWORD_FILE: &str = "LOCKET_ETCD_PASSWORD_FILE";
/// A PEM file of the CA certificates to trust, read by [`Connect::from_env`].
pub const ENV_CA: &str = "LOCKET_ETCD_CA";
/// A PEM client certificate, read by [`Connect::from_env`].
pub const ENV_CERT: &str = "LOCKET_ETCD_CERT";
/// The PEM key of the client certificate, read by [`Connect::from_env`].
pub const ENV_KEY: &str = "LOCKET_ETCD_KEY";

/// Settings for a [`Session`] with a cluster.
///
/// ```no_run
/// use locket_etcd::{Address, Connect};
///
/// # fn main() -> Result<(), locket_etcd::Error> {
/// let address = Address::parse("etcd://127.0.0.1:2379/jobs/deploy")?;
/// let session = Connect::new(address.cluster).from_env()?.session()?;
/// let lock = session.lock(&address.name)?;
/// let guard = lock.lock()?;
/// println!("fencing token {:?}", lock.token());
/// drop(guard);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Connect {
    cluster: Cluster,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    user: Option<String>,
    password: Option<String>,
    lease_ttl: Duration,
    connect_timeout: Duration,
    check_access: Vec<String>,
}

impl std::fmt::Debug for Connect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connect")
            .field("cluster", &self.cluster)
            .field("ca", &self.ca)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("lease_ttl", &self.lease_ttl)
            .finish()
    }
}

impl Connect {
    /// Settings for `cluster`: no TLS files, no credentials, a lease TTL of
    /// [`DEFAULT_LEASE_TTL`].
    #[must_use]
    pub fn new(cluster: Cluster) -> Self {
        Self {
            cluster,
            ca: None,
            cert: None,
            key: None,
            user: None,
            password: None,
            lease_ttl: DEFAULT_LEASE_TTL,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            check_access: Vec::new(),
        }
    }

    /// Takes what the environment sets: [`ENV_USER`], the password from
    /// [`ENV_PASSWORD`] or [`ENV_PASSWORD_FILE`], and the TLS files
    /// [`ENV_CA`], [`ENV_CERT`] and [`ENV_KEY`]. What is already set is
    /// kept.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the password file cannot be read, and
    /// [`Error::Settings`] when both password variables are set.
    pub fn from_env(mut self) -> Result<Self, Error> {
        let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        if self.user.is_none() {
            self.user = var(ENV_USER).map(|v| v.to_string_lossy().into_owned());
        }
        if self.password.is_none() {
            match (var(ENV_PASSWORD), var(ENV_PASSWORD_FILE)) {
                (Some(_), Some(_)) => {
                    return Err(Error::Settings(format!(
                        "set {ENV_PASSWORD} or {ENV_PASSWORD_FILE}, not both"
                    )));
                }
                (Some(p), None) => self.password = Some(p.to_string_lossy().into_owned()),
                (None, Some(file)) => self = self.password_file(file)?,
                (None, None) => {}
            }
        }
        self.ca = self.ca.or_else(|| var(ENV_CA).map(PathBuf::from));
        self.cert = self.cert.or_else(|| var(ENV_CERT).map(PathBuf::from));
        self.key = self.key.or_else(|| var(ENV_KEY).map(PathBuf::from));
        Ok(self)
    }

    /// Trusts the CA certificates in the PEM file `path` for the cluster's
    /// TLS endpoints.
    #[must_use]
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca = Some(path.into());
        self
    }

    /// Presents the client certificate `cert` with its key `key` (PEM files).
    #[must_use]
    pub fn client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.cert = Some(cert.into());
        self.key = Some(key.into());
        self
    }

    /// Authenticates as `user` with `password`.
    #[must_use]
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self.password = Some(password.into());
        self
    }

    /// Authenticates as `user`, with the password from wherever else it is set.
    #[must_use]
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Reads the password from the first line of the file `path`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the file cannot be read.
    pub fn password_file(mut self, path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Config {
            what: "password file",
            path: path.to_owned(),
            source,
        })?;
        self.password = Some(text.lines().next().unwrap_or("").to_owned());
        Ok(self)
    }

    /// Sets the lease's time to live: how long the cluster keeps this
    /// process's locks after it stops answering. Rounded up to whole
    /// seconds; etcd may raise it to its minimum.
    #[must_use]
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// Bounds how long [`session`](Self::session) may take.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Has [`session`](Self::session) also check that the credentials may
    /// read the keys of the lock (or namespace) `name`, so that a missing
    /// or unprivileged user is reported before any lock is asked for
    /// (etcd grants leases to anyone). Each call adds a name to check.
    #[must_use]
    pub fn check_access(mut self, name: impl Into<String>) -> Self {
        self.check_access.push(name.into());
        self
    }

    /// The cluster these settings reach.
    #[must_use]
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Connects, authenticates and grants the session's first lease.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] or [`Error::Settings`] for TLS files and
    /// credentials that cannot be used, [`Error::Auth`] when the cluster
    /// refuses them, [`Error::Unavailable`] when it does not answer (with
    /// quorum) within the connect timeout, and [`Error::Etcd`] otherwise.
    pub fn session(&self) -> Result<Session, Error> {
        let options = self.options()?;
        let secs = self.lease_ttl.as_secs() + u64::from(self.lease_ttl.subsec_nanos() > 0);
        let ttl = i64::try_from(secs.max(1)).unwrap_or(i64::MAX);
        Session::start(
            self.cluster.urls(),
            options,
            self.cluster.to_string(),
            ttl,
            self.connect_timeout,
            self.check_access
                .iter()
                .map(|name| format!("{name}/"))
                .collect(),
        )
    }

    fn options(&self) -> Result<ConnectOptions, Error> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(self.connect_timeout)
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
            .with_require_leader(true);
        match (&self.user, &self.password) {
            (Some(user), Some(password)) => options = options.with_user(user, password),
            (Some(user), None) => {
                return Err(Error::Settings(format!(
                    "user {user:?} is set but no password: set {ENV_PASSWORD} or {ENV_PASSWORD_FILE}"
                )));
            }
            (None, Some(_)) => {
                return Err(Error::Settings(format!(
                    "a password is set but no user: set {ENV_USER}"
                )));
            }
            (None, None) => {}
        }
        let read = |what, path: &Path| {
            std::fs::read(path).map_err(|source| Error::Config {
                what,
                path: path.to_owned(),
                source,
            })
        };
        let uses_tls_files = self.ca.is_some() || self.cert.is_some() || self.key.is_some();
        if uses_tls_files && !self.cluster.tls() {
            return Err(Error::Settings(
                "TLS files are set but the address is etcd://; use etcd+https://".to_owned(),
            ));
        }
        if self.cluster.tls() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &self.ca {
                tls = tls.ca_certificate(Certificate::from_pem(read("CA certificate", ca)?));
            }
            match (&self.cert, &self.key) {
                (Some(cert), Some(key)) => {
                    tls = tls.identity(Identity::from_pem(
                        read("client certificate", cert)?,
                        read("client key", key)?,
                    ));
                }
                (None, None) => {}
                _ => {
                    return Err(Error::Settings(
                        "a client certificate needs both its certificate and its key".to_owned(),
                    ));
                }
            }
            options = options.with_tls(tls);
        }
        Ok(options)
    }
}
