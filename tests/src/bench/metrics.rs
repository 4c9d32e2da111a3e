//! A scrape of the scheduler's Prometheus endpoint after the run: how its store committed
//! (group-commit batch sizes, commit time) and what it sent.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Serialize;

/// Figures read from `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SchedulerMetrics {
    /// Durable store commits (each one fsync).
    pub store_commits: f64,
    /// Mean time of one commit, ms.
    pub store_commit_mean_ms: f64,
    /// Mean number of transactions folded into one commit.
    pub store_batch_mean: f64,
    /// Assignments the scheduler sent to agents.
    pub assignments_sent: f64,
    /// Messages that carried them.
    pub assignment_messages: f64,
    /// Shard status reports it received.
    pub shard_reports: f64,
    /// Writes of reports applied to their Job's counters without planning it again.
    pub report_writes_counted: f64,
    /// Writes of reports that planned their Job again.
    pub report_writes_replanned: f64,
}

/// GETs `http://ADDR/metrics` (plain HTTP/1.0 on loopback; no client library needed).
pub fn scrape(addr: SocketAddr) -> anyhow::Result<SchedulerMetrics> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "GET /metrics HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    let Some((head, text)) = body.split_once("\r\n\r\n") else {
        bail!("no HTTP response from {addr}");
    };
    if !head.starts_with("HTTP/1.") || !head.contains(" 200") {
        bail!(
            "{addr}/metrics answered {}",
            head.lines().next().unwrap_or("")
        );
    }
    Ok(parse(text))
}

/// Reads the figures from a Prometheus text exposition.
pub fn parse(text: &str) -> SchedulerMetrics {
    let value = |name: &str| -> f64 {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .filter(|(series, _)| {
                series == &name
                    || series
                        .strip_prefix(name)
                        .is_some_and(|r| r.starts_with('{'))
            })
            .filter_map(|(_, v)| v.parse::<f64>().ok())
            .sum()
    };
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let round = |v: f64| (v * 1000.0).round() / 1000.0;
    let commits = value("fedjob_store_commit_duration_seconds_count");
    SchedulerMetrics {
        store_commits: commits,
        store_commit_mean_ms: round(ratio(
            value("fedjob_store_commit_duration_seconds_sum") * 1000.0,
            commits,
        )),
        store_batch_mean: round(ratio(
            value("fedjob_store_commit_batch_size_sum"),
            value("fedjob_store_commit_batch_size_count"),
        )),
        assignments_sent: value("fedjob_assignments_sent_total"),
        assignment_messages: value("fedjob_assignment_messages_sent_total"),
        shard_reports: value("fedjob_shard_reports_total"),
        report_writes_counted: value("fedjob_shard_report_writes_counted_total"),
        report_writes_replanned: value("fedjob_shard_report_writes_replanned_total"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sums_counts_and_counters() {
        let text = "# HELP x\n\
            fedjob_store_commit_duration_seconds_sum 0.5\n\
            fedjob_store_commit_duration_seconds_count 100\n\
            fedjob_store_commit_duration_seconds_bucket{le=\"0.1\"} 100\n\
            fedjob_store_commit_batch_size_sum 400\n\
            fedjob_store_commit_batch_size_count 100\n\
            fedjob_assignments_sent_total 30\n\
            fedjob_assignment_messages_sent_total 3\n\
            fedjob_shard_reports_total 7\n\
            fedjob_shard_report_writes_counted_total 5\n\
            fedjob_shard_report_writes_replanned_total 2\n";
        let m = parse(text);
        assert_eq!(m.store_commits, 100.0);
        assert_eq!(m.store_commit_mean_ms, 5.0);
        assert_eq!(m.store_batch_mean, 4.0);
        assert_eq!((m.assignments_sent, m.shard_reports), (30.0, 7.0));
        assert_eq!(m.assignment_messages, 3.0);
        assert_eq!(
            (m.report_writes_counted, m.report_writes_replanned),
            (5.0, 2.0)
        );
    }
}
