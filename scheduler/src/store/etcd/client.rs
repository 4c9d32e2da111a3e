//! Connections to the etcd members: one lazily connected gRPC channel per endpoint, a shared
//! "current" endpoint that every call starts from, failover to the next endpoint, timeouts,
//! and the auth token.
//!
//! Why own rotation instead of tonic's `Channel::balance_list`: the store must know *which*
//! member a call went to and *how* it failed. A request that never left this process (the
//! member refused the connection, or said it has no leader before doing anything) can go to
//! the next member whatever it is; a txn that may have reached a member that then died cannot
//! be sent again blindly — a retried compare-and-swap that had in fact been applied would
//! answer `Conflict` for a write that won. A balancer hides both facts.
//!
//! Every call carries `hasleader: true`, which makes a member that has lost its cluster refuse
//! at once (and cancel watches) rather than wait, so the call moves on to a member that can
//! serve it.

use std::error::Error as StdError;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Uri};
use tonic::{Code, Status};

use super::pb::etcdserverpb::{AuthenticateRequest, auth_client::AuthClient};
use super::{EtcdCredentials, EtcdError, EtcdOptions, EtcdTls};
use crate::store::StoreError;

/// Largest response accepted from etcd. Listings are paged, so this only bounds one page.
pub(super) const MAX_RESPONSE_BYTES: usize = 256 << 20;
/// First pause after every endpoint failed in a row; doubles up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_millis(25);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// HTTP/2 pings find a member that vanished without closing the connection (a partition, a
/// frozen host). etcd refuses pings more often than every 5 s by default.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// etcd's metadata asking a member to refuse a call while it has no raft leader.
pub(super) const REQUIRE_LEADER_KEY: &str = "hasleader";
/// etcd's metadata carrying the token of [`AuthClient::authenticate`].
const TOKEN_KEY: &str = "token";

/// Whether a failed call may be sent again, to the next member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Retry {
    /// Reads, and writes whose repetition changes nothing (compaction, lease grant/revoke):
    /// on any transient failure.
    Always,
    /// Writes (txns): only when the request certainly was not applied.
    IfNotSent,
}

/// What a failed call tells about the request and the member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    /// The request was not processed (no connection, no leader, overloaded): try elsewhere.
    NotSent,
    /// The member or the connection failed while the request was out: it may have been
    /// applied. A read can try elsewhere, a write must not.
    MaybeApplied,
    /// The auth token expired or is unknown to the member: authenticate again, then retry.
    InvalidToken,
    /// etcd refused the request itself (bad argument, permission, compaction): retrying
    /// cannot help.
    Permanent,
}

/// How a failed attempt of a call ends: retried, or with this error.
pub(super) enum Outcome {
    Retry,
    Fail(StoreError),
}

/// The members and how to reach them.
pub(super) struct Client {
    members: Vec<Member>,
    /// Index of the endpoint calls start from; moves on when a call there fails.
    current: AtomicUsize,
    credentials: Option<EtcdCredentials>,
    /// The token of the last authentication, sent with every call when auth is on.
    token: RwLock<Option<AsciiMetadataValue>>,
    /// Makes concurrent callers that all found the token expired authenticate once.
    authenticating: tokio::sync::Mutex<()>,
    request_timeout: Duration,
    retry_timeout: Duration,
}

struct Member {
    /// The endpoint as configured, for messages and [`super::EtcdStore::current_endpoint`].
    name: String,
    channel: Channel,
}

impl Client {
    /// Prepares a lazily connected channel per endpoint; connects to nothing yet.
    pub(super) fn new(options: &EtcdOptions) -> Result<Self, StoreError> {
        if options.endpoints.is_empty() {
            return Err(config_error("no etcd endpoint given".to_owned()));
        }
        let tls = options.tls.as_ref().map(tls_config).transpose()?;
        let mut members = Vec::with_capacity(options.endpoints.len());
        for uri in &options.endpoints {
            let name = uri.to_string().trim_end_matches('/').to_owned();
            match (uri.scheme_str(), &tls) {
                (Some("https"), None) => {
                    return Err(config_error(format!(
                        "etcd endpoint {name} uses https, which needs the CA that signed \
                         etcd's certificate (--etcd-ca)"
                    )));
                }
                (Some("http"), Some(_)) => {
                    return Err(config_error(format!(
                        "TLS options are set but etcd endpoint {name} is plain http; write it \
                         as https://…"
                    )));
                }
                (Some("http" | "https"), _) => {}
                _ => {
                    return Err(config_error(format!(
                        "etcd endpoint {name} must start with http:// or https://"
                    )));
                }
            }
            let mut endpoint = Endpoint::from(uri.clone())
                .connect_timeout(options.connect_timeout)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
                .keep_alive_timeout(KEEPALIVE_TIMEOUT)
                .keep_alive_while_idle(true);
            if let Some(tls) = &tls {
                endpoint = endpoint.tls_config(tls.clone()).map_err(|e| {
                    config_error(format!("TLS setup for etcd endpoint {name}: {e}"))
                })?;
            }
            members.push(Member {
                name,
                channel: endpoint.connect_lazy(),
            });
        }
        Ok(Client {
            members,
            current: AtomicUsize::new(0),
            credentials: options.credentials.clone(),
            token: RwLock::new(None),
            authenticating: tokio::sync::Mutex::new(()),
            request_timeout: options.request_timeout,
            retry_timeout: options.retry_timeout,
        })
    }

    /// How many endpoints there are.
    pub(super) fn len(&self) -> usize {
        self.members.len()
    }

    /// The endpoint calls go to now, and its channel.
    pub(super) fn pick(&self) -> (usize, Channel) {
        let index = self.current.load(Ordering::Relaxed) % self.members.len();
        (index, self.members[index].channel.clone())
    }

    /// The channel of endpoint `index`, for calls that must go to one member.
    pub(super) fn channel(&self, index: usize) -> Channel {
        self.members[index].channel.clone()
    }

    /// The endpoint `index` as configured.
    pub(super) fn name(&self, index: usize) -> &str {
        &self.members[index].name
    }

    /// Moves calls off endpoint `index` after a failure there (unless another caller already
    /// did, so that concurrent failures skip one endpoint, not several).
    pub(super) fn failed(&self, index: usize) {
        let next = (index + 1) % self.members.len();
        let _ = self
            .current
            .compare_exchange(index, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// The per-attempt timeout.
    pub(super) fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// `message` as a request carrying the metadata every call needs.
    pub(super) fn request<M>(&self, message: M) -> tonic::Request<M> {
        let mut request = tonic::Request::new(message);
        self.decorate(request.metadata_mut());
        request
    }

    fn decorate(&self, metadata: &mut MetadataMap) {
        metadata.insert(REQUIRE_LEADER_KEY, AsciiMetadataValue::from_static("true"));
        if let Some(token) = self.token.read().clone() {
            metadata.insert(TOKEN_KEY, token);
        }
    }

    /// Runs a unary call, moving to the next endpoint on failures that `retry` allows, until
    /// it succeeds, fails for good, or [`EtcdOptions::retry_timeout`] has passed.
    pub(super) async fn unary<M, T, F, Fut>(
        &self,
        context: &'static str,
        retry: Retry,
        message: M,
        call: F,
    ) -> Result<T, StoreError>
    where
        M: Clone,
        F: Fn(Channel, tonic::Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let started = Instant::now();
        let mut attempt = Attempts::new(self);
        loop {
            let (index, channel) = self.pick();
            let request = self.request(message.clone());
            let status =
                match tokio::time::timeout(self.request_timeout, call(channel, request)).await {
                    Ok(Ok(response)) => return Ok(response.into_inner()),
                    Ok(Err(status)) => status,
                    Err(_) => Status::deadline_exceeded(format!(
                        "no answer within {:?}",
                        self.request_timeout
                    )),
                };
            match self.after_failure(context, retry, index, &status).await {
                Outcome::Fail(error) => return Err(error),
                Outcome::Retry => attempt.next(context, started, index, &status).await?,
            }
        }
    }

    /// Decides what a failed attempt at endpoint `index` means for the call, authenticating
    /// again or moving off the endpoint as needed.
    pub(super) async fn after_failure(
        &self,
        context: &'static str,
        retry: Retry,
        index: usize,
        status: &Status,
    ) -> Outcome {
        let endpoint = self.name(index);
        match classify(status) {
            Failure::Permanent => Outcome::Fail(refused(context, endpoint, status)),
            Failure::InvalidToken if self.credentials.is_none() => {
                Outcome::Fail(refused(context, endpoint, status))
            }
            Failure::InvalidToken => match self.reauthenticate().await {
                Ok(()) => Outcome::Retry,
                Err(error) => Outcome::Fail(error),
            },
            Failure::NotSent => {
                self.failed(index);
                Outcome::Retry
            }
            Failure::MaybeApplied => {
                self.failed(index);
                match retry {
                    Retry::Always => Outcome::Retry,
                    Retry::IfNotSent => Outcome::Fail(StoreError::backend(
                        context,
                        EtcdError::OutcomeUnknown {
                            endpoint: endpoint.to_owned(),
                            detail: describe(status),
                        },
                    )),
                }
            }
        }
    }

    /// Decides what a broken stream (a watch, a lease keep-alive) at endpoint `index` means.
    /// Streams only read, so anything but etcd refusing the request itself is retried on
    /// the next member.
    pub(super) async fn after_stream_failure(
        &self,
        context: &'static str,
        index: usize,
        status: &Status,
    ) -> Outcome {
        match classify(status) {
            Failure::InvalidToken if self.credentials.is_some() => {
                match self.reauthenticate().await {
                    Ok(()) => Outcome::Retry,
                    Err(error) => Outcome::Fail(error),
                }
            }
            _ if matches!(
                status.code(),
                Code::PermissionDenied
                    | Code::InvalidArgument
                    | Code::Unauthenticated
                    | Code::FailedPrecondition
                    | Code::Unimplemented
            ) =>
            {
                Outcome::Fail(refused(context, self.name(index), status))
            }
            _ => {
                self.failed(index);
                Outcome::Retry
            }
        }
    }

    /// Authenticates with the configured user (no-op without credentials) and keeps the token.
    pub(super) async fn authenticate(&self) -> Result<(), StoreError> {
        let Some(credentials) = &self.credentials else {
            return Ok(());
        };
        let message = AuthenticateRequest {
            name: credentials.username.clone(),
            password: credentials.password.clone(),
        };
        let started = Instant::now();
        let mut attempt = Attempts::new(self);
        loop {
            let (index, channel) = self.pick();
            // Without the old token: a stale one must not get in the way of a new one.
            let mut request = tonic::Request::new(message.clone());
            request
                .metadata_mut()
                .insert(REQUIRE_LEADER_KEY, AsciiMetadataValue::from_static("true"));
            let answer = tokio::time::timeout(
                self.request_timeout,
                AuthClient::new(channel).authenticate(request),
            )
            .await;
            let status = match answer {
                Ok(Ok(response)) => {
                    let token = response.into_inner().token;
                    let value = AsciiMetadataValue::try_from(token.as_str()).map_err(|_| {
                        StoreError::backend(
                            "authenticating to etcd",
                            EtcdError::Protocol("etcd answered a token that is not ASCII".into()),
                        )
                    })?;
                    *self.token.write() = Some(value);
                    return Ok(());
                }
                Ok(Err(status)) => status,
                Err(_) => Status::deadline_exceeded(format!(
                    "no answer within {:?}",
                    self.request_timeout
                )),
            };
            match classify(&status) {
                Failure::NotSent | Failure::MaybeApplied => self.failed(index),
                Failure::Permanent | Failure::InvalidToken => {
                    return Err(refused(
                        "authenticating to etcd (--etcd-username/--etcd-password)",
                        self.name(index),
                        &status,
                    ));
                }
            }
            attempt
                .next("authenticating to etcd", started, index, &status)
                .await?;
        }
    }

    /// Authenticates again after etcd refused the token, once for all callers that found it
    /// refused at the same time.
    async fn reauthenticate(&self) -> Result<(), StoreError> {
        let stale = self.token.read().clone();
        let _one_at_a_time = self.authenticating.lock().await;
        if *self.token.read() != stale {
            return Ok(()); // someone else already has a new one
        }
        tracing::info!("etcd refused the auth token; authenticating again");
        self.authenticate().await
    }
}

/// Counts a call's failed attempts: moves straight on while there are endpoints it has not
/// tried since the last pause, pauses (with growing backoff) after every endpoint failed, and
/// gives up after the retry timeout.
pub(super) struct Attempts<'a> {
    client: &'a Client,
    failures: usize,
    backoff: Duration,
}

impl<'a> Attempts<'a> {
    pub(super) fn new(client: &'a Client) -> Self {
        Attempts {
            client,
            failures: 0,
            backoff: INITIAL_BACKOFF,
        }
    }

    /// After a retryable failure at endpoint `index`: waits as needed, or gives up.
    pub(super) async fn next(
        &mut self,
        context: &'static str,
        started: Instant,
        index: usize,
        status: &Status,
    ) -> Result<(), StoreError> {
        self.failures += 1;
        let pause = if self.failures.is_multiple_of(self.client.len()) {
            let pause = self.backoff;
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            pause
        } else {
            Duration::ZERO
        };
        let retry_timeout = self.client.retry_timeout;
        if started.elapsed() + pause >= retry_timeout {
            let endpoints: Vec<&str> = self
                .client
                .members
                .iter()
                .map(|m| m.name.as_str())
                .collect();
            return Err(StoreError::backend(
                context,
                EtcdError::Unavailable {
                    endpoints: endpoints.join(","),
                    waited: retry_timeout,
                    last_error: format!("{}: {}", self.client.name(index), describe(status)),
                },
            ));
        }
        tracing::debug!(attempt = self.failures, ?pause, error = %describe(status), "etcd call failed; retrying");
        tokio::time::sleep(pause).await;
        Ok(())
    }
}

/// What a failed call means; see [`Failure`].
pub(super) fn classify(status: &Status) -> Failure {
    let message = status.message();
    if is_connect_error(status) {
        return Failure::NotSent;
    }
    // etcd's own refusals that come before the request is proposed to raft.
    if message.contains("etcdserver: no leader")
        || message.contains("etcdserver: too many requests")
    {
        return Failure::NotSent;
    }
    if status.code() == Code::Unauthenticated && message.contains("invalid auth token") {
        return Failure::InvalidToken;
    }
    match status.code() {
        // The connection broke, the member timed out or is stopping, or our own timeout hit.
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted => {
            Failure::MaybeApplied
        }
        // A failure raised in this process (the transport), not an answer from etcd.
        Code::Unknown | Code::Internal if status.source().is_some() => Failure::MaybeApplied,
        Code::Unknown if message.contains("transport") || message.contains("connection") => {
            Failure::MaybeApplied
        }
        _ => Failure::Permanent,
    }
}

/// Whether the call failed while connecting, i.e. before anything was sent.
fn is_connect_error(status: &Status) -> bool {
    let mut source: Option<&(dyn StdError + 'static)> = status.source();
    while let Some(error) = source {
        if error.downcast_ref::<tonic::ConnectError>().is_some() {
            return true;
        }
        source = error.source();
    }
    false
}

/// A status as one line: its code, message and the causes a transport error carries.
pub(super) fn describe(status: &Status) -> String {
    let mut text = format!("{:?}: {}", status.code(), status.message());
    let mut source: Option<&(dyn StdError + 'static)> = status.source();
    while let Some(error) = source {
        let cause = error.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
        source = error.source();
    }
    text
}

/// etcd refused a call for good.
pub(super) fn refused(context: &'static str, endpoint: &str, status: &Status) -> StoreError {
    StoreError::backend(
        context,
        EtcdError::Refused {
            endpoint: endpoint.to_owned(),
            code: status.code(),
            message: status.message().to_owned(),
        },
    )
}

fn config_error(message: String) -> StoreError {
    StoreError::backend("configuring the etcd client", EtcdError::Config(message))
}

/// The rustls configuration for [`EtcdTls`]: etcd's CA, and our certificate when given.
fn tls_config(tls: &EtcdTls) -> Result<ClientTlsConfig, StoreError> {
    let read = |what: &str, path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|e| config_error(format!("reading {what} {}: {e}", path.display())))
    };
    let mut config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("--etcd-ca", &tls.ca)?))
        // etcd negotiates HTTP/2 on its client port; do not insist on seeing it in ALPN.
        .assume_http2(true);
    if let Some(identity) = &tls.client {
        let cert = read("--etcd-cert", &identity.cert)?;
        let key = read("--etcd-key", &identity.key)?;
        config = config.identity(Identity::from_pem(cert, key));
    }
    Ok(config)
}

/// Parses an etcd endpoint as etcdctl takes it: `http://host:port`, `https://host:port`, or
/// `host:port` (plain http). The port defaults to 2379.
pub fn parse_endpoint(text: &str) -> Result<Uri, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("an etcd endpoint must not be empty".to_owned());
    }
    let with_scheme = if text.contains("://") {
        text.to_owned()
    } else {
        format!("http://{text}")
    };
    let uri: Uri = with_scheme
        .parse()
        .map_err(|e| format!("invalid etcd endpoint \"{text}\": {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(format!(
                "invalid etcd endpoint \"{text}\": the scheme must be http or https"
            ));
        }
    }
    let Some(authority) = uri.authority().filter(|a| !a.host().is_empty()) else {
        return Err(format!("invalid etcd endpoint \"{text}\": no host"));
    };
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "invalid etcd endpoint \"{text}\": an endpoint has no path"
        ));
    }
    let authority = if authority.port().is_some() {
        authority.to_string()
    } else {
        format!("{authority}:2379")
    };
    format!("{}://{authority}", uri.scheme_str().unwrap_or("http"))
        .parse()
        .map_err(|e| format!("invalid etcd endpoint \"{text}\": {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_like_etcdctl() {
        let parse = |t: &str| parse_endpoint(t).map(|u| u.to_string());
        assert_eq!(
            parse("http://127.0.0.1:2379").unwrap(),
            "http://127.0.0.1:2379/"
        );
        assert_eq!(parse("10.0.0.1:2380").unwrap(), "http://10.0.0.1:2380/");
        assert_eq!(parse("https://etcd-0").unwrap(), "https://etcd-0:2379/");
        assert_eq!(parse(" [::1]:2379 ").unwrap(), "http://[::1]:2379/");
        assert!(parse("").is_err());
        assert!(parse("unix:///run/etcd.sock").is_err());
        assert!(parse("http://etcd:2379/v3").is_err());
        assert!(parse("http://:2379").is_err());
    }

    #[test]
    fn failures_are_classified_by_what_they_say_about_the_request() {
        let connect = Status::from_error(Box::new(tonic::ConnectError(
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into(),
        )));
        assert_eq!(classify(&connect), Failure::NotSent);
        assert_eq!(
            classify(&Status::unavailable("etcdserver: no leader")),
            Failure::NotSent
        );
        assert_eq!(
            classify(&Status::unavailable("etcdserver: request timed out")),
            Failure::MaybeApplied
        );
        assert_eq!(
            classify(&Status::deadline_exceeded("no answer")),
            Failure::MaybeApplied
        );
        assert_eq!(
            classify(&Status::unauthenticated("etcdserver: invalid auth token")),
            Failure::InvalidToken
        );
        assert_eq!(
            classify(&Status::permission_denied("etcdserver: permission denied")),
            Failure::Permanent
        );
        assert_eq!(
            classify(&Status::invalid_argument(
                "etcdserver: duplicate key given in txn request"
            )),
            Failure::Permanent
        );
        assert_eq!(
            classify(&Status::out_of_range(
                "etcdserver: mvcc: required revision has been compacted"
            )),
            Failure::Permanent
        );
        // An Unknown status etcd sent (no local cause) is its answer, not a broken transport.
        assert_eq!(
            classify(&Status::unknown("etcdserver: something")),
            Failure::Permanent
        );
    }
}
