//! Command-line configuration, parsed and checked once at start into a typed [`Config`].
//!
//! Anything wrong with the flags is found here, before the syncer touches the scheduler or the
//! cluster; the binary prints the [`ConfigError`] and exits with code 64 (`EX_USAGE`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use fedjob_proto::capacity::DEFAULT_BYTES_PER_HEARTBEAT;
pub use fedjob_proto::config_error::ConfigError;
use fedjob_proto::{duration, names};

/// Flags as typed on the command line (see [`Config`] for the checked form).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "fedjob-syncer",
    version,
    about = "Runs one member cluster's shards of federated Jobs: pulls them from the fedjob scheduler and realises them with the Kubernetes API"
)]
pub struct Args {
    /// Scheduler URL(s), comma-separated (`http://host:50051`); tried in turn when one fails.
    #[arg(long, env = "FEDJOB_SCHEDULER", value_delimiter = ',', required = true)]
    pub scheduler: Vec<String>,

    /// Name of this member cluster in the federation (a DNS-1123 label).
    #[arg(long, env = "FEDJOB_CLUSTER_NAME")]
    pub cluster_name: String,

    /// Kubeconfig file to reach the member cluster (default: the in-cluster service account).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,

    /// Kubeconfig context to use (with `--kubeconfig`, or with `$KUBECONFIG`/`~/.kube/config`).
    #[arg(long)]
    pub context: Option<String>,

    /// Labels of this cluster, `key=value` pairs separated by commas.
    #[arg(long, value_delimiter = ',')]
    pub labels: Vec<String>,

    /// How often to send a heartbeat (`5s`, `500ms`, `1m`); the scheduler may ask for a shorter one.
    #[arg(long, default_value = "5s")]
    pub heartbeat_interval: String,

    /// Create a shard's namespace when it does not exist (needs the namespaces ClusterRole).
    #[arg(long)]
    pub create_namespaces: bool,

    /// Manage shards in this namespace only (default: every namespace).
    #[arg(long)]
    pub namespace: Option<String>,

    /// How many shards are applied or deleted at the same time.
    #[arg(long, default_value_t = 16)]
    pub workers: usize,

    /// How long in-flight applies may take to finish after SIGTERM.
    #[arg(long, default_value = "10s")]
    pub shutdown_grace: String,

    /// PEM CA certificate(s) that sign the scheduler's certificate (needed for `https://` URLs).
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,

    /// PEM client certificate presented to the scheduler; its DNS SAN (or CN) must be this
    /// cluster's name.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of `--tls-cert`.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Allow plain-text `http://` to a scheduler that is not on a loopback address.
    #[arg(long)]
    pub insecure: bool,

    /// Suspend this cluster's unfinished shards after hearing from no scheduler for this long
    /// (`30s`, `2m`), so that their work can be reassigned safely; they resume once a scheduler
    /// is back in sync. At least twice `--heartbeat-interval`. Off by default.
    #[arg(long)]
    pub self_fence_after: Option<String>,

    /// Serve `/metrics` (Prometheus text format), `/healthz` and `/readyz` on this address
    /// (`0.0.0.0:9090`). Off by default.
    #[arg(long)]
    pub metrics_listen: Option<std::net::SocketAddr>,

    /// Report the cluster's free capacity (schedulable Ready nodes' allocatable minus their
    /// pods' requests) to the scheduler, at most once per heartbeat (needs the
    /// `fedjob-syncer-capacity` ClusterRole: nodes and pods, read-only).
    #[arg(long)]
    pub report_capacity: bool,

    /// With `--report-capacity`: the bytes of capacity reports a heartbeat interval may carry,
    /// on average. A report of N bytes is followed by the next no sooner than ⌈N ÷ this⌉
    /// heartbeats later, so a large cluster costs the scheduler no more than a small one; 0
    /// reports at every heartbeat after a change.
    #[arg(long, default_value_t = DEFAULT_BYTES_PER_HEARTBEAT)]
    pub capacity_bytes_per_heartbeat: u64,
    /// Give up on a request to the member cluster's API server (a watch excepted) that has
    /// no answer after this long, and try again later; what it wrote is found by reading.
    #[arg(long, default_value = "60s")]
    pub cluster_request_timeout: String,
}

/// TLS material for `https://` schedulers, read once at start.
#[derive(Clone, PartialEq, Eq)]
pub struct Tls {
    /// PEM CA certificate(s) trusted for the scheduler.
    pub ca: Vec<u8>,
    /// PEM client certificate and key, when the scheduler asks agents for one.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Tls")
            .field("ca_bytes", &self.ca.len())
            .field("client_identity", &self.identity.is_some())
            .finish()
    }
}

/// Where the syncer gets its Kubernetes credentials from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeSource {
    /// The pod's service account (neither `--kubeconfig` nor `--context`).
    InCluster,
    /// A kubeconfig: an explicit file, or the default one (`$KUBECONFIG`, `~/.kube/config`) when
    /// only a context is named.
    Kubeconfig {
        /// `--kubeconfig`.
        path: Option<PathBuf>,
        /// `--context`.
        context: Option<String>,
    },
}

/// The syncer's configuration, checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// Scheduler URLs, in the order they are tried.
    pub schedulers: Vec<String>,
    /// This member cluster's name.
    pub cluster_name: String,
    /// Labels sent at registration.
    pub labels: BTreeMap<String, String>,
    /// How to reach the member cluster's API server.
    pub kube: KubeSource,
    /// Longest time between two heartbeats.
    pub heartbeat_interval: Duration,
    /// Create missing namespaces instead of reporting them.
    pub create_namespaces: bool,
    /// The only namespace managed, when restricted.
    pub namespace: Option<String>,
    /// Concurrent applies/deletes.
    pub workers: usize,
    /// Time allowed for in-flight work after SIGTERM.
    pub shutdown_grace: Duration,
    /// TLS for `https://` schedulers.
    pub tls: Option<Tls>,
    /// Lease after which the syncer suspends its own shards when no scheduler is heard from.
    pub self_fence_after: Option<Duration>,
    /// Where to serve metrics and probes, if anywhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Watch nodes and pods and report the cluster's free capacity.
    pub report_capacity: bool,
    /// Bytes of capacity reports per heartbeat, on average (0: no pacing).
    pub capacity_bytes_per_heartbeat: u64,
    /// How long a request to the member cluster may go unanswered (a watch excepted).
    pub cluster_request_timeout: Duration,
}

impl Config {
    /// Parses and checks a command line (the first item is the program name).
    pub fn from_args<I, T>(args: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Self::try_from(Args::try_parse_from(args)?)
    }
}

impl TryFrom<Args> for Config {
    type Error = ConfigError;

    fn try_from(args: Args) -> Result<Self, ConfigError> {
        let schedulers: Vec<String> = args
            .scheduler
            .iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        if schedulers.is_empty() {
            return Err(ConfigError::invalid(
                "scheduler",
                "at least one URL is needed",
            ));
        }
        let tls = read_tls(&args)?;
        for url in &schedulers {
            check_url(url, tls.is_some(), args.insecure)
                .map_err(|m| ConfigError::invalid("scheduler", m))?;
        }
        if tls.is_some() && !schedulers.iter().any(|u| u.starts_with("https://")) {
            return Err(ConfigError::invalid(
                "scheduler",
                "--tls-* flags are given but no scheduler URL is https://",
            ));
        }
        names::check_cluster_name(&args.cluster_name).map_err(|m| {
            ConfigError::invalid("cluster-name", format!("{:?}: {m}", args.cluster_name))
        })?;
        if let Some(ns) = &args.namespace {
            let rules = names::dns1123_label(ns);
            if !rules.is_empty() {
                let rules = rules.join("; ");
                return Err(ConfigError::invalid(
                    "namespace",
                    format!("{ns:?}: {rules}"),
                ));
            }
        }
        let labels = parse_labels(&args.labels).map_err(|m| ConfigError::invalid("labels", m))?;
        let heartbeat_interval = duration::parse(&args.heartbeat_interval)
            .map_err(|e| ConfigError::invalid("heartbeat-interval", e.to_string()))?;
        if heartbeat_interval < Duration::from_millis(10) {
            return Err(ConfigError::invalid(
                "heartbeat-interval",
                "must be at least 10ms",
            ));
        }
        let shutdown_grace = duration::parse(&args.shutdown_grace)
            .map_err(|e| ConfigError::invalid("shutdown-grace", e.to_string()))?;
        let self_fence_after = args
            .self_fence_after
            .as_deref()
            .map(|text| {
                let lease = duration::parse(text)
                    .map_err(|e| ConfigError::invalid("self-fence-after", e.to_string()))?;
                // A healthy session is heard from once a heartbeat interval (the answers to
                // heartbeats); a lease shorter than two would fence a cluster that is fine.
                if lease < heartbeat_interval * 2 {
                    return Err(ConfigError::invalid(
                        "self-fence-after",
                        format!(
                            "{text}: must be at least twice --heartbeat-interval ({}), or a syncer that is connected fences itself",
                            duration::format(heartbeat_interval)
                        ),
                    ));
                }
                Ok(lease)
            })
            .transpose()?;
        let cluster_request_timeout = duration::parse(&args.cluster_request_timeout)
            .map_err(|e| ConfigError::invalid("cluster-request-timeout", e.to_string()))?;
        if cluster_request_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "cluster-request-timeout",
                "must be more than 0s",
            ));
        }
        if args.workers == 0 {
            return Err(ConfigError::invalid("workers", "must be at least 1"));
        }
        let kube = match (args.kubeconfig, args.context) {
            (None, None) => KubeSource::InCluster,
            (path, context) => KubeSource::Kubeconfig { path, context },
        };
        Ok(Config {
            schedulers,
            cluster_name: args.cluster_name,
            labels,
            kube,
            heartbeat_interval,
            create_namespaces: args.create_namespaces,
            namespace: args.namespace,
            workers: args.workers,
            shutdown_grace,
            tls,
            self_fence_after,
            metrics_listen: args.metrics_listen,
            report_capacity: args.report_capacity,
            capacity_bytes_per_heartbeat: args.capacity_bytes_per_heartbeat,
            cluster_request_timeout,
        })
    }
}

/// Reads the `--tls-*` files; `None` without `--tls-ca`.
fn read_tls(args: &Args) -> Result<Option<Tls>, ConfigError> {
    let read = |flag: &'static str, path: &PathBuf| {
        std::fs::read(path)
            .map_err(|e| ConfigError::invalid(flag, format!("{}: {e}", path.display())))
    };
    let identity = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some((read("tls-cert", cert)?, read("tls-key", key)?)),
        _ => None,
    };
    match (&args.tls_ca, identity) {
        (Some(ca), identity) => Ok(Some(Tls {
            ca: read("tls-ca", ca)?,
            identity,
        })),
        (None, Some(_)) => Err(ConfigError::invalid(
            "tls-ca",
            "--tls-cert/--tls-key need --tls-ca, the CA that signs the scheduler's certificate",
        )),
        (None, None) => Ok(None),
    }
}

/// A scheduler URL is `https://HOST[:PORT]` (with `--tls-ca`) or `http://HOST[:PORT]`; plain
/// text goes only to a loopback address unless `--insecure` (SPEC §8).
fn check_url(url: &str, tls: bool, insecure: bool) -> Result<(), String> {
    let uri: tonic::codegen::http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let host = uri.host().unwrap_or_default();
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    match uri.scheme_str() {
        Some("https") if tls => Ok(()),
        Some("https") => Err(format!("{url:?}: https needs --tls-ca")),
        Some("http") if insecure || is_loopback(host) => Ok(()),
        Some("http") => Err(format!(
            "{url:?}: refusing plain text to a scheduler that is not on a loopback address; use https:// with --tls-ca, or --insecure"
        )),
        _ => Err(format!("{url:?}: the scheme must be http or https")),
    }
}

/// `localhost`, `127.0.0.0/8` or `[::1]`.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Parses `k=v` items into a map, checking keys and values as Kubernetes checks labels.
pub fn parse_labels(items: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    for item in items.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?} is not key=value"))?;
        check_label_key(key).map_err(|m| format!("key {key:?}: {m}"))?;
        check_label_value(value).map_err(|m| format!("value {value:?}: {m}"))?;
        if labels.insert(key.to_owned(), value.to_owned()).is_some() {
            return Err(format!("key {key:?} given twice"));
        }
    }
    Ok(labels)
}

/// A label key: an optional DNS-1123 subdomain prefix and `/`, then a name of at most 63
/// characters (alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric).
fn check_label_key(key: &str) -> Result<(), &'static str> {
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            if !names::is_dns1123_subdomain(prefix) {
                return Err("the prefix must be a DNS-1123 subdomain");
            }
            name
        }
        None => key,
    };
    if name.is_empty() {
        return Err("the name part must not be empty");
    }
    check_label_value(name)
}

/// A label value: empty, or at most 63 alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric.
fn check_label_value(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Ok(());
    }
    let bytes = value.as_bytes();
    let ok = value.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric);
    if ok {
        Ok(())
    } else {
        Err(
            "must be at most 63 characters of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric character",
        )
    }
}

#[cfg(test)]
mod tests;
