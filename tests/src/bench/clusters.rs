//! Whether the member clusters stay Ready: `ListClusters` polled through the run.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use fedjob_proto::shutdown::Shutdown;
use fedjob_proto::v1::{self, federation_client::FederationClient};
use serde::Serialize;
use tonic::transport::Channel;

/// What the polls saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReadyReport {
    /// Clusters expected.
    pub clusters: usize,
    /// Polls made.
    pub polls: usize,
    /// Polls that failed.
    pub poll_errors: usize,
    /// Fewest clusters Ready in one poll.
    pub min_ready: usize,
    /// Fewest clusters with an agent stream open in one poll.
    pub min_connected: usize,
    /// Whether every poll found every cluster Ready.
    pub all_ready: bool,
    /// Longest time since a cluster's last heartbeat seen in a poll, ms.
    pub max_heartbeat_age_ms: f64,
    /// Slowest `ListClusters` answer, ms.
    pub max_poll_ms: f64,
    /// Some clusters seen NotReady (at most 10).
    pub not_ready_seen: Vec<String>,
}

/// One poll's counts: (Ready, connected, oldest heartbeat age in ms).
fn tally(clusters: &[v1::Cluster], now: SystemTime) -> (usize, usize, f64, Vec<String>) {
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut ready = 0;
    let mut connected = 0;
    let mut oldest = 0f64;
    let mut not_ready = Vec::new();
    for c in clusters {
        if c.state == "Ready" {
            ready += 1;
        } else {
            not_ready.push(c.name.clone());
        }
        connected += usize::from(c.connected);
        if let Some(t) = &c.last_heartbeat {
            let at = Duration::new(t.seconds.max(0) as u64, t.nanos.max(0) as u32);
            oldest = oldest.max(now.saturating_sub(at).as_secs_f64() * 1000.0);
        }
    }
    (ready, connected, oldest, not_ready)
}

/// Waits (at most `timeout`) until `expected` clusters are Ready and connected.
pub async fn wait_ready(
    channel: Channel,
    expected: usize,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let mut client = FederationClient::new(channel);
    let start = tokio::time::Instant::now();
    let mut last = (0, 0);
    while start.elapsed() < timeout {
        if let Ok(r) = client.list_clusters(v1::ListClustersRequest {}).await {
            let items = r.into_inner().items;
            let (ready, connected, _, _) = tally(&items, SystemTime::now());
            last = (ready, connected);
            if ready >= expected && connected >= expected {
                return Ok(start.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "{} of {expected} clusters Ready ({} connected) after {timeout:?}",
        last.0,
        last.1
    )
}

/// Polls `ListClusters` every `every` until `stop` fires.
pub async fn monitor(
    channel: Channel,
    expected: usize,
    every: Duration,
    stop: Shutdown,
) -> ReadyReport {
    let mut client = FederationClient::new(channel);
    let mut report = ReadyReport {
        clusters: expected,
        min_ready: usize::MAX,
        min_connected: usize::MAX,
        ..Default::default()
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.fired() => break,
        }
        let started = tokio::time::Instant::now();
        let answer = tokio::time::timeout(
            Duration::from_secs(30),
            client.list_clusters(v1::ListClustersRequest {}),
        )
        .await;
        report.max_poll_ms = report
            .max_poll_ms
            .max(started.elapsed().as_secs_f64() * 1000.0);
        report.polls += 1;
        let Ok(Ok(answer)) = answer else {
            report.poll_errors += 1;
            continue;
        };
        let items = answer.into_inner().items;
        let (ready, connected, oldest, not_ready) = tally(&items, SystemTime::now());
        report.min_ready = report.min_ready.min(ready);
        report.min_connected = report.min_connected.min(connected);
        report.max_heartbeat_age_ms = report.max_heartbeat_age_ms.max(oldest.round());
        for name in not_ready {
            if report.not_ready_seen.len() < 10 && !report.not_ready_seen.contains(&name) {
                report.not_ready_seen.push(name);
            }
        }
    }
    if report.polls == report.poll_errors {
        report.min_ready = 0;
        report.min_connected = 0;
    }
    report.all_ready = report.polls > report.poll_errors
        && report.poll_errors == 0
        && report.min_ready >= expected;
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_counts_ready_connected_and_the_oldest_heartbeat() {
        let now = UNIX_EPOCH + Duration::from_secs(100);
        let at = |s: i64| {
            Some(prost_types::Timestamp {
                seconds: s,
                nanos: 0,
            })
        };
        let clusters = vec![
            v1::Cluster {
                name: "a".into(),
                state: "Ready".into(),
                connected: true,
                last_heartbeat: at(99),
                ..Default::default()
            },
            v1::Cluster {
                name: "b".into(),
                state: "NotReady".into(),
                connected: false,
                last_heartbeat: at(96),
                ..Default::default()
            },
        ];
        let (ready, connected, oldest, not_ready) = tally(&clusters, now);
        assert_eq!((ready, connected, oldest), (1, 1, 4000.0));
        assert_eq!(not_ready, vec!["b".to_owned()]);
    }
}
