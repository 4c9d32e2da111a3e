//! How to reach etcd (endpoints, TLS, credentials, timeouts), and what etcd answers besides
//! keys: its errors, its status, the outcome of a create-if-absent.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tonic::Code;
use tonic::transport::Uri;

use crate::store::{CommitObserver, KeyValue, Revision};

/// The prefix all keys live under unless `--etcd-prefix` says otherwise.
pub const DEFAULT_PREFIX: &str = "/fedjob/";

/// How to reach etcd; [`EtcdOptions::new`] fills in the defaults.
#[derive(Clone)]
pub struct EtcdOptions {
    /// The members' client URLs (`http://host:port` or `https://host:port`); calls go to one
    /// at a time and move on when it fails.
    pub endpoints: Vec<Uri>,
    /// Every key of the store lives under this prefix (a `/` is appended when missing), so
    /// several federations, or other users, can share an etcd cluster.
    pub prefix: String,
    /// TLS towards etcd; required for `https://` endpoints.
    pub tls: Option<EtcdTls>,
    /// etcd user and password, when etcd has authentication enabled.
    pub credentials: Option<EtcdCredentials>,
    /// How long connecting to one member may take.
    pub connect_timeout: Duration,
    /// How long one attempt of a call at one member may take.
    pub request_timeout: Duration,
    /// How long a call keeps trying other members before it fails.
    pub retry_timeout: Duration,
    /// Keys per page of a listing.
    pub list_page_size: u32,
    /// Told about every applied txn (its latency; one txn each), e.g. by the metrics module.
    pub observer: Option<Arc<dyn CommitObserver>>,
}

impl EtcdOptions {
    /// Options for `endpoints` with the default prefix, no TLS, no auth, and timeouts that
    /// ride out an etcd leader election (a few seconds).
    pub fn new(endpoints: Vec<Uri>) -> Self {
        EtcdOptions {
            endpoints,
            prefix: DEFAULT_PREFIX.to_owned(),
            tls: None,
            credentials: None,
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(5),
            retry_timeout: Duration::from_secs(15),
            list_page_size: 500,
            observer: None,
        }
    }
}

impl fmt::Debug for EtcdOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdOptions")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("tls", &self.tls)
            .field("credentials", &self.credentials)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("retry_timeout", &self.retry_timeout)
            .field("list_page_size", &self.list_page_size)
            .field("observer", &self.observer.as_ref().map(|_| "…"))
            .finish()
    }
}

/// TLS towards etcd (`--etcd-ca`, `--etcd-cert`, `--etcd-key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    /// PEM file of the CA that signed the members' certificates.
    pub ca: std::path::PathBuf,
    /// Our certificate, for members that require client certificates.
    pub client: Option<ClientIdentity>,
}

/// A client certificate and its key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The certificate (chain).
    pub cert: std::path::PathBuf,
    /// Its private key.
    pub key: std::path::PathBuf,
}

/// An etcd user (`--etcd-username`, `--etcd-password`).
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdCredentials {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

impl fmt::Debug for EtcdCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdCredentials")
            .field("username", &self.username)
            .field("password", &"…")
            .finish()
    }
}

/// Why a call to etcd failed; the source of a [`StoreError::Backend`].
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// The options cannot work (an endpoint's scheme, unreadable TLS files, …).
    #[error("{0}")]
    Config(String),
    /// No member served the call before the retry timeout.
    #[error(
        "no etcd endpoint of {endpoints} served the call within {waited:?}; last error: {last_error}"
    )]
    Unavailable {
        /// The configured endpoints.
        endpoints: String,
        /// How long the call kept trying.
        waited: Duration,
        /// The last member's failure.
        last_error: String,
    },
    /// etcd refused the call itself (permission, authentication, a malformed request, …).
    #[error("etcd at {endpoint} refused the call: {code:?}: {message}")]
    Refused {
        /// The member that answered.
        endpoint: String,
        /// The gRPC code.
        code: Code,
        /// etcd's message.
        message: String,
    },
    /// A txn was sent and then the connection or the member failed: etcd may or may not have
    /// applied it. Read the keys to find out.
    #[error(
        "the txn's outcome is unknown: the call to etcd at {endpoint} failed after it was sent ({detail}); read the keys to learn whether it was applied"
    )]
    OutcomeUnknown {
        /// The member the txn went to.
        endpoint: String,
        /// How the call failed.
        detail: String,
    },
    /// etcd answered something this client does not understand.
    #[error("unexpected answer from etcd: {0}")]
    Protocol(String),
}

/// The answer of [`EtcdStore::create_if_absent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Creation {
    /// The key was absent and is now written, at this revision.
    Created(Revision),
    /// The key already exists; this is it (e.g. the current leader's record).
    Exists(KeyValue),
}

/// One member's view of the cluster (etcd's Maintenance Status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdStatus {
    /// The endpoint that answered.
    pub endpoint: String,
    /// The member's etcd version.
    pub version: String,
    /// The member's id.
    pub member_id: u64,
    /// The member the answering one takes for the leader; 0 when it knows none.
    pub leader: u64,
    /// The current raft term.
    pub raft_term: u64,
    /// The member's store revision.
    pub revision: Revision,
    /// The size of the member's database file, in bytes.
    pub db_size: i64,
    /// Alarms and other problems the member reports (e.g. "NOSPACE").
    pub errors: Vec<String>,
}

impl EtcdStatus {
    /// Whether the member has a leader and reports no problem.
    pub fn is_healthy(&self) -> bool {
        self.leader != 0 && self.errors.is_empty()
    }
}
