//! Calls to the cluster: one endpoint at a time, each attempt bounded,
//! passing failures (no leader, a member gone) retried with backoff on the
//! next endpoint, refusals reported; within the caller's deadline.

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use tokio::time::{Instant, timeout_at};
use tonic::Code;

use crate::error::Error;

/// The shortest bound on one attempt of a call, however little of the
/// caller's timeout is left: a zero timeout still gets one real try.
const MIN_ATTEMPT: Duration = Duration::from_secs(2);
/// The longest one attempt may take before it is abandoned and retried on
/// the next endpoint. Every call is idempotent or harmless to repeat (a
/// second lease granted by a repeated grant expires unused), and a member
/// that just lost its leader can hold a call until a new one is elected.
pub(crate) const MAX_ATTEMPT: Duration = Duration::from_secs(2);
/// The cluster's endpoints, and a client for each, connected when first
/// used. etcd-client's own balancing over several endpoints fails whole
/// when one is down, so calls stick to one endpoint and move to the next on
/// a passing failure, as etcd's Go client does.
pub(crate) struct Endpoints {
    urls: Vec<String>,
    options: ConnectOptions,
    clients: Mutex<Vec<Option<Client>>>,
    current: AtomicUsize,
    /// The endpoints as given, for error messages.
    pub(crate) shown: String,
}

impl Endpoints {
    pub(crate) fn new(urls: Vec<String>, options: ConnectOptions, shown: String) -> Self {
        Self {
            clients: Mutex::new(vec![None; urls.len()]),
            urls,
            options,
            current: AtomicUsize::new(0),
            shown,
        }
    }

    /// Runs `f` against the cluster, retrying passing failures with backoff
    /// until `deadline` (forever when `None`). Every attempt gets at least
    /// [`MIN_ATTEMPT`]; out of time, the error is [`Error::Unavailable`].
    pub(crate) async fn call<T, F, Fut>(
        &self,
        deadline: Option<Instant>,
        mut f: F,
    ) -> Result<T, Error>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut backoff = Duration::from_millis(25);
        loop {
            let now = Instant::now();
            let attempt_end = match deadline {
                Some(d) => {
                    now + d
                        .saturating_duration_since(now)
                        .clamp(MIN_ATTEMPT, MAX_ATTEMPT)
                }
                None => now + MAX_ATTEMPT,
            };
            let (at, client) = self.client().await;
            let attempt = async {
                match client {
                    Ok(c) => f(c).await,
                    Err(e) => Err(e),
                }
            };
            let detail = match timeout_at(attempt_end, attempt).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) => match classify(&e) {
                    Failure::Passing(detail) => {
                        self.move_on(at);
                        detail
                    }
                    Failure::Auth(detail) => {
                        return Err(Error::Auth {
                            endpoints: self.shown.clone(),
                            detail,
                        });
                    }
                    Failure::Other(detail) => {
                        return Err(Error::Etcd {
                            endpoints: self.shown.clone(),
                            detail,
                        });
                    }
                },
                Err(_) => {
                    self.move_on(at);
                    "no answer in time".to_owned()
                }
            };
            let retry_at = Instant::now() + backoff;
            if deadline.is_some_and(|d| retry_at >= d) {
                return Err(Error::Unavailable {
                    endpoints: self.shown.clone(),
                    detail,
                });
            }
            tracing::debug!(%detail, "etcd call failed; retrying");
            tokio::time::sleep_until(retry_at).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// The client of the endpoint in use, and its index; connecting it
    /// first if need be.
    pub(crate) async fn client(&self) -> (usize, Result<Client, etcd_client::Error>) {
        let at = self.current.load(Ordering::Acquire) % self.urls.len();
        let cached = self.clients.lock().unwrap_or_else(|e| e.into_inner())[at].clone();
        if let Some(client) = cached {
            return (at, Ok(client));
        }
        let made = Client::connect([&self.urls[at]], Some(self.options.clone())).await;
        if let Ok(client) = &made {
            self.clients.lock().unwrap_or_else(|e| e.into_inner())[at] = Some(client.clone());
        }
        (at, made)
    }

    /// Moves calls from endpoint `at`, which just failed, to the next one
    /// (unless another call moved them already).
    pub(crate) fn move_on(&self, at: usize) {
        if self.urls.len() > 1 {
            let next = (at + 1) % self.urls.len();
            if self
                .current
                .compare_exchange(at, next, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                tracing::debug!(from = %self.urls[at], to = %self.urls[next], "etcd endpoint failed; moving on");
            }
        }
    }
}

/// How a failed call is to be treated.
enum Failure {
    /// Passing: no leader, a leader change, a member gone. Retry.
    Passing(String),
    /// The credentials were refused.
    Auth(String),
    /// Anything else: report it.
    Other(String),
}

fn classify(e: &etcd_client::Error) -> Failure {
    use etcd_client::Error as E;
    match e {
        E::GRpcStatus(s) => {
            let message = s.message().to_owned();
            match s.code() {
                Code::Unavailable
                | Code::DeadlineExceeded
                | Code::Aborted
                | Code::ResourceExhausted
                | Code::Cancelled => Failure::Passing(message),
                Code::Unauthenticated | Code::PermissionDenied => Failure::Auth(message),
                Code::InvalidArgument | Code::FailedPrecondition
                    if message.contains("authentication")
                        || message.contains("user name")
                        || message.contains("auth token") =>
                {
                    Failure::Auth(message)
                }
                Code::Unknown | Code::Internal
                    if message.contains("leader")
                        || message.contains("transport")
                        || message.contains("connection")
                        || message.contains("timed out") =>
                {
                    Failure::Passing(message)
                }
                _ => Failure::Other(message),
            }
        }
        E::TransportError(t) => Failure::Passing(full_message(t)),
        E::IoError(io) => Failure::Passing(io.to_string()),
        E::LeaseKeepAliveError(m) | E::WatchError(m) => Failure::Passing(m.clone()),
        other => Failure::Other(full_message(other)),
    }
}

/// An error's message with its sources, which is where tonic says why.
fn full_message(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}
