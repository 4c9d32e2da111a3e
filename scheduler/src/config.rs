//! The scheduler's configuration: flags parsed once at start into a typed struct. A bad value
//! stops the process with a clear message (exit code 64) before anything runs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

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
}

/// Store backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// An embedded redb database in `--data-dir`.
    Embedded,
}

impl Config {
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
}
