//! A real etcd cluster for the tests: members on free loopback ports, in a
//! scratch directory, stopped when the value is dropped (also when a test
//! fails, and, through `PR_SET_PDEATHSIG`, when the test process dies).

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::programs::{etcd_exe, etcdctl_exe};
use super::tls::{TlsFiles, make_tls};

/// How long a cluster may take to become healthy on a loaded machine.
const HEALTHY_WITHIN: Duration = Duration::from_secs(60);

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

/// A running etcd cluster.
pub struct EtcdCluster {
    dir: tempfile::TempDir,
    members: Vec<Member>,
    token: String,
    tls: Option<TlsFiles>,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl EtcdCluster {
    /// Starts `n` members over plain HTTP and waits until they are healthy.
    ///
    /// # Errors
    ///
    /// When etcd is missing or the cluster does not become healthy.
    pub fn start(n: usize) -> anyhow::Result<Self> {
        Self::start_with(n, false)
    }

    /// Starts `n` members whose client endpoints speak TLS and ask for a
    /// client certificate signed by the cluster's CA.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start), and when openssl cannot make the files.
    pub fn start_tls(n: usize) -> anyhow::Result<Self> {
        Self::start_with(n, true)
    }

    fn start_with(n: usize, tls: bool) -> anyhow::Result<Self> {
        // A port found free can be taken by another test before etcd binds
        // it; try again with new ports.
        let mut last = None;
        for _ in 0..3 {
            match Self::try_start(n, tls) {
                Ok(cluster) => return Ok(cluster),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("three tries"))
    }

    fn try_start(n: usize, tls: bool) -> anyhow::Result<Self> {
        etcd_exe()?;
        let dir = tempfile::tempdir()?;
        let tls = if tls {
            Some(make_tls(dir.path())?)
        } else {
            None
        };
        let mut members = Vec::new();
        for i in 0..n {
            members.push(Member {
                name: format!("m{i}"),
                client_port: free_port()?,
                peer_port: free_port()?,
                child: None,
            });
        }
        let token = format!(
            "locket-test-{}-{}",
            std::process::id(),
            dir.path().file_name().unwrap_or_default().to_string_lossy()
        );
        let mut cluster = Self {
            dir,
            members,
            token,
            tls,
        };
        for i in 0..n {
            cluster.spawn(i)?;
        }
        cluster.wait_healthy()?;
        Ok(cluster)
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect();
        let m = &self.members[i];
        let client = format!("{}://127.0.0.1:{}", self.scheme(), m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let log = std::fs::File::create(self.dir.path().join(format!("{}.log", m.name)))?;
        let mut cmd = Command::new(etcd_exe()?);
        cmd.arg(format!("--name={}", m.name))
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join(&m.name).display()
            ))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster={}", initial.join(",")))
            .arg("--initial-cluster-state=new")
            .arg(format!("--initial-cluster-token={}", self.token))
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(t) = &self.tls {
            cmd.arg(format!("--cert-file={}", t.server_cert.display()))
                .arg(format!("--key-file={}", t.server_key.display()))
                .arg(format!("--trusted-ca-file={}", t.ca.display()))
                .arg("--client-cert-auth");
        }
        // SAFETY: prctl with PR_SET_PDEATHSIG only sets this child's death
        // signal; it allocates nothing and is async-signal-safe, as code
        // between fork and exec must be.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().context("starting etcd")?;
        self.members[i].child = Some(child);
        Ok(())
    }

    /// The client endpoints, `127.0.0.1:PORT,...`.
    #[must_use]
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The endpoints as URLs, for etcdctl.
    #[must_use]
    pub fn urls(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}://127.0.0.1:{}", self.scheme(), m.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `etcd://ENDPOINTS/NAME` (`etcd+https://` for a TLS cluster).
    #[must_use]
    pub fn address(&self, name: &str) -> String {
        let scheme = if self.tls.is_some() {
            "etcd+https"
        } else {
            "etcd"
        };
        format!("{scheme}://{}/{name}", self.endpoints())
    }

    /// A session on this cluster with a 5 s lease, as the tests use.
    ///
    /// # Panics
    ///
    /// When it cannot connect.
    #[must_use]
    pub fn session(&self) -> locket_etcd::Session {
        let address = locket_etcd::Address::parse(&self.address("x")).expect("our own address");
        locket_etcd::Connect::new(address.cluster)
            .lease_ttl(Duration::from_secs(5))
            .session()
            .expect("a session")
    }

    /// The TLS files, for a cluster started with [`start_tls`](Self::start_tls).
    #[must_use]
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// The scratch directory the cluster lives in.
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// An etcdctl command aimed at the live members (with the client
    /// certificate, for a TLS cluster).
    ///
    /// # Panics
    ///
    /// When etcdctl is not installed.
    #[must_use]
    pub fn etcdctl(&self) -> Command {
        let mut cmd = Command::new(etcdctl_exe().expect("etcdctl"));
        let live: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| format!("{}://127.0.0.1:{}", self.scheme(), m.client_port))
            .collect();
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", live.join(",")))
            .arg("--dial-timeout=5s")
            .arg("--command-timeout=10s");
        if let Some(t) = &self.tls {
            cmd.arg(format!("--cacert={}", t.ca.display()))
                .arg(format!("--cert={}", t.client_cert.display()))
                .arg(format!("--key={}", t.client_key.display()));
        }
        cmd
    }

    /// Runs etcdctl with `args` and returns its stdout.
    ///
    /// # Errors
    ///
    /// When it fails.
    pub fn ctl(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.etcdctl().args(args).output()?;
        if !out.status.success() {
            bail!(
                "etcdctl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Waits until every live member answers as healthy.
    ///
    /// # Errors
    ///
    /// When they do not within a generous bound.
    pub fn wait_healthy(&self) -> anyhow::Result<()> {
        let until = Instant::now() + HEALTHY_WITHIN;
        loop {
            let out = self.etcdctl().args(["endpoint", "health"]).output()?;
            if out.status.success() {
                return Ok(());
            }
            if Instant::now() >= until {
                let logs: Vec<String> = self
                    .members
                    .iter()
                    .map(|m| {
                        std::fs::read_to_string(self.dir.path().join(format!("{}.log", m.name)))
                            .unwrap_or_default()
                    })
                    .collect();
                bail!(
                    "the etcd cluster did not become healthy: {}\nlogs:\n{}",
                    String::from_utf8_lossy(&out.stderr),
                    logs.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Which member leads now.
    ///
    /// # Errors
    ///
    /// When etcdctl cannot say.
    pub fn leader(&self) -> anyhow::Result<usize> {
        let out = self.ctl(&["endpoint", "status", "--write-out=fields"])?;
        // Per endpoint, a block of `"Field" : value` lines that ends with
        // its `"Endpoint"`.
        let mut member = None;
        let mut ids = Vec::new();
        let mut leader = None;
        for line in out.lines() {
            let value = || line.split(':').nth(1).map(|v| v.trim().to_owned());
            if line.starts_with("\"MemberID\"") {
                member = value();
            } else if line.starts_with("\"Leader\"") {
                leader = value();
            } else if line.starts_with("\"Endpoint\"") {
                let port = line
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.trim().trim_matches('"').parse::<u16>().ok());
                ids.push((port, member.take()));
            }
        }
        let leader = leader.context("no leader in the status")?;
        let port = ids
            .into_iter()
            .find(|(_, id)| id.as_deref() == Some(leader.as_str()))
            .and_then(|(port, _)| port)
            .context("the leader is not among the endpoints")?;
        self.members
            .iter()
            .position(|m| m.client_port == port)
            .context("no member has the leader's port")
    }

    /// Kills member `i` (SIGKILL) and waits for it to end.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again, from its data directory.
    ///
    /// # Errors
    ///
    /// When it cannot be started.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.spawn(i)
    }

    /// Turns on authentication with a `root` user whose password is
    /// `password`.
    ///
    /// # Errors
    ///
    /// When etcdctl fails.
    pub fn enable_auth(&self, password: &str) -> anyhow::Result<()> {
        self.ctl(&["user", "add", &format!("root:{password}")])?;
        self.ctl(&["user", "grant-role", "root", "root"])?;
        self.ctl(&["auth", "enable"])?;
        Ok(())
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
