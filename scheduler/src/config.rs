//! The scheduler's configuration: flags parsed once at start into a typed struct. A bad value
//! stops the process with a clear message (exit code 64) before anything runs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use tonic::transport::Uri;

use crate::store::etcd::{
    ClientIdentity, DEFAULT_PREFIX, EtcdCredentials, EtcdOptions, EtcdTls, parse_endpoint,
};

/// `fedjob-scheduler`: the federation control plane.
#[derive(Debug, Clone, Parser)]
#[command(name = "fedjob-scheduler", version, about)]
pub struct Config {
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

    /// How long a cluster may be silent before it is NotReady.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub cluster_grace: Duration,

    /// How long a NotReady cluster waits before Jobs with `rebalance: true` move its unfinished
    /// work elsewhere; defaults to the cluster grace.
    #[arg(long, value_parser = parse_duration)]
    pub failover_after: Option<Duration>,

    /// Largest gRPC message accepted, in bytes.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub max_message_bytes: usize,

    /// With `--store etcd`: TTL of this replica's etcd lease, on which its leadership and the
    /// liveness records it writes hang; a dead leader is replaced within about this long.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
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

impl Config {
    /// Checks what flags cannot check one by one; the message says what to change.
    pub fn validate(&self) -> Result<(), String> {
        let tls = self.security.tls_cert.is_some();
        if !tls && !self.listen.ip().is_loopback() && !self.security.insecure {
            return Err(format!(
                "refusing to serve plain-text gRPC on {} (not a loopback address): give --tls-cert and --tls-key, or --insecure",
                self.listen
            ));
        }
        Ok(())
    }

    /// Interval agents are asked to heartbeat at: a third of the grace, so two lost heartbeats
    /// do not make a cluster NotReady.
    pub fn heartbeat_interval(&self) -> Duration {
        (self.cluster_grace / 3).max(Duration::from_millis(50))
    }
}

/// Parses `500ms`, `30s`, `5m`, `1h`, or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| {
        format!("invalid duration \"{text}\": expected a number and a unit such as 500ms, 30s, 5m")
    })?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "invalid duration \"{text}\": unit must be ms, s, m or h"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("invalid duration \"{text}\": {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_kubectl_flags() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("fedjob-scheduler").chain(args.iter().copied()))
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
