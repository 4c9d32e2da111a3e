//! The scheduler's configuration: the flags as typed ([`Args`]), parsed and checked once at
//! start into a typed [`Config`], with every file they name read. A bad value stops the process
//! with a [`ConfigError`] naming the flag (exit code 64, `EX_USAGE`) before anything runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, ValueEnum};
pub use fedjob_proto::config_error::ConfigError;
use fedjob_proto::duration;
use tonic::transport::Uri;

use crate::auth::Tokens;
use crate::store::etcd::{
    ClientIdentity, DEFAULT_PREFIX, EtcdCredentials, EtcdOptions, EtcdTls, parse_endpoint,
};

/// `fedjob-scheduler`: the federation control plane. The flags as typed; [`Config`] is the
/// checked form.
#[derive(Debug, Clone, Parser)]
#[command(name = "fedjob-scheduler", version, about)]
pub struct Args {
    /// Address of the gRPC API (user and agent services, reflection, health).
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// Directory of the embedded durable store.
    #[arg(long, default_value = "fedjob-data")]
    pub data_dir: PathBuf,

    /// Where the state is kept.
    #[arg(long, value_enum, default_value_t = StoreKind::Embedded)]
    pub store: StoreKind,

    /// Address of the Prometheus metrics endpoint (`/metrics`); none when unset.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,

    /// Address of the Kubernetes API (`kubectl --context federation-cluster`), with the same TLS,
    /// tokens and roles as the gRPC API; none when unset.
    #[arg(long)]
    pub kube_api_listen: Option<SocketAddr>,

    /// How long a cluster may be silent before it is NotReady.
    #[arg(long, default_value = "30s", value_parser = duration::parse)]
    pub cluster_grace: Duration,

    /// How long a NotReady cluster waits before Jobs with `rebalance: true` move its unfinished
    /// work elsewhere; defaults to the cluster grace.
    #[arg(long, value_parser = duration::parse)]
    pub failover_after: Option<Duration>,

    /// Largest gRPC message accepted, in bytes.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub max_message_bytes: usize,

    /// Users' writes of Jobs (create, apply, update, patch, delete) worked on at once; more wait
    /// their turn in the order they came, so that agents' status reports are not stuck behind
    /// them. Default: 4 per CPU core with the embedded store; no limit with etcd, whose round
    /// trip paces writes already.
    #[arg(long)]
    pub concurrent_job_writes: Option<usize>,

    /// With `--store etcd`: TTL of this replica's etcd lease, on which its leadership and the
    /// liveness records it writes hang; a dead leader is replaced within about this long.
    #[arg(long, default_value = "5s", value_parser = duration::parse)]
    pub lease_ttl: Duration,

    /// How to reach etcd, with `--store etcd`.
    #[command(flatten)]
    pub etcd: EtcdFlags,

    /// TLS and access control of the gRPC API.
    #[command(flatten)]
    pub security: SecurityFlags,
}

/// The flags that secure the gRPC API.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct SecurityFlags {
    /// PEM certificate (chain) of the scheduler; serves TLS with `--tls-key`.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of `--tls-cert`.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA that signs agents' client certificates; agents then act only for the cluster
    /// their certificate names (DNS SAN, else CN). Needs TLS.
    #[arg(long, requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,

    /// File of `token,user,role` lines (roles `admin`, `viewer`); users must then present one.
    #[arg(long)]
    pub tokens: Option<PathBuf>,

    /// Serve plain text on a non-loopback address (never do this outside a lab).
    #[arg(long)]
    pub insecure: bool,
}

/// Store backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// An embedded redb database in `--data-dir`.
    Embedded,
    /// An etcd cluster (`--etcd-endpoints`), under `--etcd-prefix`.
    Etcd,
}

/// The `--etcd-*` flags.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct EtcdFlags {
    /// etcd members' client URLs, comma-separated: `http://host:2379`, `https://host:2379`, or
    /// `host:port` (http). Required with `--store etcd`.
    #[arg(
        id = "etcd_endpoints",
        long = "etcd-endpoints",
        value_name = "URL,…",
        value_delimiter = ',',
        value_parser = parse_endpoint,
        required_if_eq("store", "etcd")
    )]
    pub endpoints: Vec<Uri>,

    /// Prefix of every fedjob key in etcd (a trailing `/` is added when missing).
    #[arg(id = "etcd_prefix", long = "etcd-prefix", default_value = DEFAULT_PREFIX)]
    pub prefix: String,

    /// CA certificate (PEM) that signed the etcd members' certificates; needed for https.
    #[arg(id = "etcd_ca", long = "etcd-ca", value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// Client certificate (PEM) for etcd members that require one (`--client-cert-auth`).
    #[arg(
        id = "etcd_cert",
        long = "etcd-cert",
        value_name = "FILE",
        requires_all = ["etcd_key", "etcd_ca"]
    )]
    pub cert: Option<PathBuf>,

    /// Private key (PEM) of `--etcd-cert`.
    #[arg(
        id = "etcd_key",
        long = "etcd-key",
        value_name = "FILE",
        requires = "etcd_cert"
    )]
    pub key: Option<PathBuf>,

    /// etcd user, when etcd has authentication enabled.
    #[arg(
        id = "etcd_username",
        long = "etcd-username",
        requires = "etcd_password"
    )]
    pub username: Option<String>,

    /// Password of `--etcd-username` (better passed in the environment than on the command line).
    #[arg(
        id = "etcd_password",
        long = "etcd-password",
        env = "FEDJOB_ETCD_PASSWORD",
        hide_env_values = true,
        requires = "etcd_username"
    )]
    pub password: Option<String>,
}

impl Default for EtcdFlags {
    fn default() -> Self {
        EtcdFlags {
            endpoints: Vec::new(),
            prefix: DEFAULT_PREFIX.to_owned(),
            ca: None,
            cert: None,
            key: None,
            username: None,
            password: None,
        }
    }
}

impl EtcdFlags {
    /// The etcd store's options these flags describe (default timeouts).
    pub fn options(&self) -> EtcdOptions {
        let mut options = EtcdOptions::new(self.endpoints.clone());
        options.prefix = self.prefix.clone();
        options.tls = self.ca.clone().map(|ca| EtcdTls {
            ca,
            client: self
                .cert
                .clone()
                .zip(self.key.clone())
                .map(|(cert, key)| ClientIdentity { cert, key }),
        });
        options.credentials = self
            .username
            .clone()
            .zip(self.password.clone())
            .map(|(username, password)| EtcdCredentials { username, password });
        options
    }
}

/// The scheduler's configuration, checked, with the files it names read.
#[derive(Clone)]
pub struct Config {
    /// Address of the gRPC API.
    pub listen: SocketAddr,
    /// Address of the metrics endpoint, when enabled.
    pub metrics_listen: Option<SocketAddr>,
    /// Address of the Kubernetes API, when enabled.
    pub kube_api_listen: Option<SocketAddr>,
    /// Where the state is kept.
    pub store: StoreConfig,
    /// How long a cluster may be silent before it is NotReady.
    pub cluster_grace: Duration,
    /// How long a NotReady cluster waits before its work moves (`rebalance: true`).
    pub failover_after: Duration,
    /// Interval agents are asked to heartbeat at.
    pub heartbeat_interval: Duration,
    /// Largest gRPC message accepted, in bytes.
    pub max_message_bytes: usize,
    /// Users' writes of Jobs worked on at once; `None` for no limit.
    pub concurrent_job_writes: Option<usize>,
    /// TLS of the API, when served over TLS.
    pub tls: Option<ServerTls>,
    /// Users and their roles, when callers must present a token.
    pub tokens: Option<Tokens>,
}

/// Where the state is kept, and how to reach it.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// An embedded redb database in this directory.
    Embedded {
        /// `--data-dir`.
        data_dir: PathBuf,
    },
    /// An etcd cluster, possibly shared with other replicas.
    Etcd {
        /// How to reach it.
        options: Box<EtcdOptions>,
        /// TTL of this replica's lease (leadership and liveness records hang on it).
        lease_ttl: Duration,
    },
}

/// The API's TLS material, read at start: PEM certificate chain, key, and the CA that signs
/// agents' client certificates.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// PEM certificate (chain) of the scheduler.
    pub cert: Vec<u8>,
    /// PEM private key of `cert`.
    pub key: Vec<u8>,
    /// PEM CA of agents' client certificates, when agents must present one.
    pub client_ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("ServerTls")
            .field("cert_bytes", &self.cert.len())
            .field("client_ca", &self.client_ca.is_some())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("metrics_listen", &self.metrics_listen)
            .field("kube_api_listen", &self.kube_api_listen)
            .field("store", &self.store)
            .field("cluster_grace", &self.cluster_grace)
            .field("failover_after", &self.failover_after)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("concurrent_job_writes", &self.concurrent_job_writes)
            .field("tls", &self.tls)
            // Never print tokens.
            .field("tokens", &self.tokens.as_ref().map(|_| "…"))
            .finish()
    }
}

impl Config {
    /// Parses and checks a command line (the first item is the program name).
    pub fn try_parse_from<I, T>(args: I) -> Result<Self, ConfigError>
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
        let tls = read_tls(&args.security)?;
        if tls.is_none() && !args.listen.ip().is_loopback() && !args.security.insecure {
            return Err(ConfigError::invalid(
                "listen",
                format!(
                    "refusing to serve plain-text gRPC on {} (not a loopback address): give --tls-cert and --tls-key, or --insecure",
                    args.listen
                ),
            ));
        }
        if let Some(addr) = args.kube_api_listen
            && tls.is_none()
            && !addr.ip().is_loopback()
            && !args.security.insecure
        {
            return Err(ConfigError::invalid(
                "kube-api-listen",
                format!(
                    "refusing to serve the Kubernetes API in plain text on {addr} (not a loopback address): give --tls-cert and --tls-key, or --insecure"
                ),
            ));
        }
        let tokens = args
            .security
            .tokens
            .as_deref()
            .map(|path| {
                let text = read("tokens", path)?;
                let text = String::from_utf8(text).map_err(|_| {
                    ConfigError::invalid("tokens", format!("{}: not UTF-8 text", path.display()))
                })?;
                Tokens::parse(&text)
                    .map_err(|m| ConfigError::invalid("tokens", format!("{}: {m}", path.display())))
            })
            .transpose()?;
        let positive = |flag: &'static str, d: Duration| {
            if d.is_zero() {
                Err(ConfigError::invalid(flag, "must be greater than 0"))
            } else {
                Ok(d)
            }
        };
        let cluster_grace = positive("cluster-grace", args.cluster_grace)?;
        let failover_after = args.failover_after.unwrap_or(cluster_grace);
        if args.max_message_bytes == 0 {
            return Err(ConfigError::invalid(
                "max-message-bytes",
                "must be greater than 0",
            ));
        }
        let concurrent_job_writes = match args.concurrent_job_writes {
            Some(0) => {
                return Err(ConfigError::invalid(
                    "concurrent-job-writes",
                    "must be greater than 0",
                ));
            }
            Some(n) => Some(n),
            None => match args.store {
                StoreKind::Embedded => {
                    Some(4 * std::thread::available_parallelism().map_or(1, usize::from))
                }
                StoreKind::Etcd => None,
            },
        };
        let store = match args.store {
            StoreKind::Embedded => StoreConfig::Embedded {
                data_dir: args.data_dir,
            },
            StoreKind::Etcd => {
                // The etcd client reads these when it connects; a missing file is a usage
                // error, found before anything runs.
                if let Some(ca) = &args.etcd.ca {
                    read("etcd-ca", ca)?;
                }
                if let (Some(cert), Some(key)) = (&args.etcd.cert, &args.etcd.key) {
                    read("etcd-cert", cert)?;
                    read("etcd-key", key)?;
                }
                StoreConfig::Etcd {
                    options: Box::new(args.etcd.options()),
                    lease_ttl: positive("lease-ttl", args.lease_ttl)?,
                }
            }
        };
        Ok(Config {
            listen: args.listen,
            metrics_listen: args.metrics_listen,
            kube_api_listen: args.kube_api_listen,
            store,
            cluster_grace,
            failover_after,
            // A third of the grace, so two lost heartbeats do not make a cluster NotReady.
            heartbeat_interval: (cluster_grace / 3).max(Duration::from_millis(50)),
            max_message_bytes: args.max_message_bytes,
            concurrent_job_writes,
            tls,
            tokens,
        })
    }
}

/// Reads the file a flag names.
fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError::invalid(flag, format!("{}: {e}", path.display())))
}

/// Reads `--tls-cert`, `--tls-key` and `--client-ca`; `None` without a certificate.
fn read_tls(flags: &SecurityFlags) -> Result<Option<ServerTls>, ConfigError> {
    let (Some(cert), Some(key)) = (&flags.tls_cert, &flags.tls_key) else {
        return Ok(None);
    };
    Ok(Some(ServerTls {
        cert: read("tls-cert", cert)?,
        key: read("tls-key", key)?,
        client_ca: flags
            .client_ca
            .as_deref()
            .map(|ca| read("client-ca", ca))
            .transpose()?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("fedjob-scheduler").chain(args.iter().copied()))
    }

    fn config(args: &[&str]) -> Result<Config, ConfigError> {
        Config::try_parse_from(std::iter::once("fedjob-scheduler").chain(args.iter().copied()))
    }

    /// The flag a configuration error names, or the whole message.
    fn refused(args: &[&str]) -> (String, String) {
        match config(args) {
            Err(e @ ConfigError::Invalid { flag, .. }) => {
                assert_eq!(e.exit_code(), 64);
                (flag.to_owned(), e.to_string())
            }
            Err(e) => panic!("{args:?}: not a checked-value error: {e}"),
            Ok(c) => panic!("{args:?}: accepted as {c:?}"),
        }
    }

    #[test]
    fn durations_are_go_durations_and_errors_name_the_flag() {
        let config = config(&["--cluster-grace", "1m30s", "--failover-after", "1.5s"]).unwrap();
        assert_eq!(config.cluster_grace, Duration::from_secs(90));
        assert_eq!(config.failover_after, Duration::from_millis(1500));
        let err = parse(&["--cluster-grace", "30"]).unwrap_err().to_string();
        assert!(
            err.contains("--cluster-grace") && err.contains("invalid duration \"30\""),
            "{err}"
        );
    }

    #[test]
    fn the_files_flags_name_are_read_once_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let p = |name: &str| dir.path().join(name).display().to_string();
        std::fs::write(p("tokens"), "t1,alice,admin\n").unwrap();
        std::fs::write(p("cert.pem"), "CERT").unwrap();
        std::fs::write(p("key.pem"), "KEY").unwrap();
        std::fs::write(p("ca.pem"), "CA").unwrap();
        let args = [
            "--tokens",
            &p("tokens"),
            "--tls-cert",
            &p("cert.pem"),
            "--tls-key",
            &p("key.pem"),
            "--client-ca",
            &p("ca.pem"),
            "--cluster-grace",
            "3s",
        ];
        let config = config(&args).unwrap();
        let tls = config.tls.clone().unwrap();
        assert_eq!(
            (tls.cert, tls.key, tls.client_ca),
            (b"CERT".to_vec(), b"KEY".to_vec(), Some(b"CA".to_vec()))
        );
        assert!(config.tokens.is_some());
        assert_eq!(config.heartbeat_interval, Duration::from_secs(1));
        assert_eq!(config.failover_after, Duration::from_secs(3));
        let shown = format!("{config:?}");
        assert!(!shown.contains("KEY") && !shown.contains("t1"), "{shown}");

        // Files removed after start do not matter: the values were read.
        std::fs::remove_file(p("tokens")).unwrap();
        assert!(config.tokens.is_some());
        let (flag, message) = refused(&args);
        assert_eq!(flag, "tokens", "{message}");
        assert!(message.contains(&p("tokens")), "{message}");
    }

    #[test]
    fn bad_values_name_their_flag() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::write(&tokens, "t1,alice,root\n").unwrap();
        let tokens = tokens.display().to_string();
        let (flag, message) = refused(&["--tokens", &tokens]);
        assert_eq!(flag, "tokens");
        assert!(message.contains("line 1"), "{message}");

        assert_eq!(
            refused(&[
                "--tls-cert",
                "/nonexistent/c",
                "--tls-key",
                "/nonexistent/k"
            ])
            .0,
            "tls-cert"
        );
        assert_eq!(refused(&["--cluster-grace", "0s"]).0, "cluster-grace");
        assert_eq!(
            refused(&["--max-message-bytes", "0"]).0,
            "max-message-bytes"
        );
        let (flag, message) = refused(&["--concurrent-job-writes", "0"]);
        assert_eq!(flag, "concurrent-job-writes");
        assert!(message.contains("must be greater than 0"), "{message}");
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(config(&[]).unwrap().concurrent_job_writes, Some(4 * cores));
        let three = config(&["--concurrent-job-writes", "3"]).unwrap();
        assert_eq!(three.concurrent_job_writes, Some(3));
        let etcd = [
            "--store",
            "etcd",
            "--etcd-endpoints",
            "http://127.0.0.1:2379",
        ];
        assert_eq!(config(&etcd).unwrap().concurrent_job_writes, None);
        let etcd_limited = [&etcd[..], &["--concurrent-job-writes", "5"]].concat();
        assert_eq!(
            config(&etcd_limited).unwrap().concurrent_job_writes,
            Some(5)
        );
        let (flag, message) = refused(&["--listen", "0.0.0.0:0"]);
        assert_eq!(flag, "listen");
        assert!(message.contains("--insecure"), "{message}");
        assert!(config(&["--listen", "0.0.0.0:0", "--insecure"]).is_ok());
        let etcd = ["--store", "etcd", "--etcd-endpoints", "127.0.0.1:2379"];
        let with = |more: &[&'static str]| [&etcd[..], more].concat();
        assert_eq!(
            refused(&with(&["--etcd-ca", "/nonexistent/ca"])).0,
            "etcd-ca"
        );
        assert_eq!(refused(&with(&["--lease-ttl", "0s"])).0, "lease-ttl");
        assert!(matches!(
            config(&with(&[])).unwrap().store,
            StoreConfig::Etcd { lease_ttl, .. } if lease_ttl == Duration::from_secs(5)
        ));

        // Usage errors clap finds are exit code 64 too; help is 0.
        assert_eq!(config(&["--store", "etcd"]).unwrap_err().exit_code(), 64);
        assert_eq!(config(&["--help"]).unwrap_err().exit_code(), 0);
    }

    #[test]
    fn etcd_flags_parse_into_store_options() {
        let config = parse(&[
            "--store",
            "etcd",
            "--etcd-endpoints",
            "https://10.0.0.1:2379,10.0.0.2",
            "--etcd-prefix",
            "/fed",
            "--etcd-ca",
            "ca.pem",
            "--etcd-cert",
            "c.pem",
            "--etcd-key",
            "k.pem",
            "--etcd-username",
            "fedjob",
            "--etcd-password",
            "pw",
        ])
        .unwrap();
        assert_eq!(config.store, StoreKind::Etcd);
        let options = config.etcd.options();
        let endpoints: Vec<String> = options.endpoints.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            endpoints,
            ["https://10.0.0.1:2379/", "http://10.0.0.2:2379/"]
        );
        assert_eq!(options.prefix, "/fed");
        assert_eq!(
            options.tls,
            Some(EtcdTls {
                ca: "ca.pem".into(),
                client: Some(ClientIdentity {
                    cert: "c.pem".into(),
                    key: "k.pem".into()
                })
            })
        );
        assert_eq!(options.credentials.unwrap().username, "fedjob");

        let embedded = parse(&[]).unwrap();
        assert_eq!(embedded.store, StoreKind::Embedded);
        assert_eq!(embedded.etcd, EtcdFlags::default());
    }

    #[test]
    fn etcd_flags_refuse_incomplete_settings() {
        // etcd without endpoints; a certificate without its key or CA; a user without password.
        assert!(parse(&["--store", "etcd"]).is_err());
        assert!(parse(&["--store", "etcd", "--etcd-endpoints", "ftp://x:1"]).is_err());
        let endpoints = ["--store", "etcd", "--etcd-endpoints", "127.0.0.1:2379"];
        let with = |more: &[&'static str]| {
            let mut args = endpoints.to_vec();
            args.extend_from_slice(more);
            parse(&args)
        };
        assert!(with(&[]).is_ok());
        assert!(with(&["--etcd-cert", "c.pem", "--etcd-ca", "ca.pem"]).is_err());
        assert!(with(&["--etcd-cert", "c.pem", "--etcd-key", "k.pem"]).is_err());
        assert!(with(&["--etcd-username", "u"]).is_err());
    }
}
