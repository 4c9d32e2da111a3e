//! The load: K concurrent clients, each on its own gRPC connection, creating federated Jobs
//! with `CreateJob` until M were sent, noting when each create was acknowledged.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use fedjob_proto::v1::{self, federation_client::FederationClient};
use serde::Serialize;
use serde_json::json;
use tonic::transport::{Channel, Endpoint};

use super::stats::{Clock, Summary};
use super::tracker::{JobTracker, job_name};
use super::watch::Watchers;

/// How long one create may take before it counts as failed.
const CREATE_TIMEOUT: Duration = Duration::from_secs(60);

/// The Jobs to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobShape {
    /// `spec.parallelism` (and `spec.completions`) of every Job.
    pub parallelism: i32,
    /// `fedjob.io/sim-duration` on the pod template, for simulated clusters.
    pub sim_duration: Option<String>,
}

impl JobShape {
    /// The manifest of Job `idx`, as the JSON text `fedctl create -f` would send.
    pub fn manifest(&self, idx: usize) -> String {
        let mut template = json!({"spec": {"restartPolicy": "Never",
            "containers": [{"name": "work", "image": "busybox", "command": ["sh", "-c", "true"]}]}});
        if let Some(d) = &self.sim_duration {
            template["metadata"] = json!({"annotations": {"fedjob.io/sim-duration": d}});
        }
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": job_name(idx), "labels": {"app": "fedjob-bench"}},
            "spec": {"parallelism": self.parallelism, "completions": self.parallelism,
                     "template": template}
        })
        .to_string()
    }
}

/// What the clients saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CreateReport {
    /// Creates sent.
    pub sent: usize,
    /// Creates acknowledged.
    pub acknowledged: usize,
    /// Creates refused or failed.
    pub errors: usize,
    /// The first error, when there was one.
    pub first_error: Option<String>,
    /// First send → last acknowledgement, seconds.
    pub elapsed_s: f64,
    /// Acknowledged creates per second over `elapsed_s`.
    pub per_second: f64,
    /// Send → acknowledgement of one create.
    pub latency: Summary,
}

/// Opens `clients` connections to `url`.
pub async fn connect(url: &str, clients: usize) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(clients);
    for _ in 0..clients.max(1) {
        let channel = Endpoint::from_shared(url.to_owned())?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .with_context(|| format!("connecting a client to {url}"))?;
        channels.push(channel);
    }
    Ok(channels)
}

/// Creates `jobs` Jobs of `shape` over the `channels` (one client each), recording every
/// acknowledgement in every one of `trackers` and opening a watch on each sampled Job.
pub async fn create_jobs(
    channels: Vec<Channel>,
    jobs: usize,
    shape: &JobShape,
    clock: Clock,
    trackers: Vec<Arc<JobTracker>>,
    watchers: Arc<Watchers>,
) -> CreateReport {
    let next = Arc::new(AtomicUsize::new(0));
    let start = clock.now_us();
    let tasks: Vec<_> = channels
        .into_iter()
        .map(|channel| {
            let (next, shape, trackers, watchers) = (
                next.clone(),
                shape.clone(),
                trackers.clone(),
                watchers.clone(),
            );
            tokio::spawn(async move {
                let mut client = FederationClient::new(channel);
                let mut mine = ClientResult::default();
                loop {
                    let idx = next.fetch_add(1, Ordering::Relaxed);
                    if idx >= jobs {
                        return mine;
                    }
                    let request = v1::CreateJobRequest {
                        manifest: shape.manifest(idx),
                        ..Default::default()
                    };
                    let sent = clock.now_us();
                    let answer =
                        tokio::time::timeout(CREATE_TIMEOUT, client.create_job(request)).await;
                    let acked = clock.now_us();
                    mine.sent += 1;
                    match answer {
                        Ok(Ok(response)) => {
                            let job = response.into_inner();
                            let shards: usize = job.placements.iter().map(|p| p.shards.len()).sum();
                            for tracker in &trackers {
                                tracker.acknowledged(idx, sent, acked, shards as u32);
                            }
                            mine.latencies.push(acked - sent);
                            mine.last_ack = mine.last_ack.max(acked);
                            watchers.watch_if_sampled(idx);
                        }
                        Ok(Err(status)) => mine.error(format!("{}: {status}", job_name(idx))),
                        Err(_) => mine.error(format!(
                            "{}: no answer within {CREATE_TIMEOUT:?}",
                            job_name(idx)
                        )),
                    }
                }
            })
        })
        .collect();
    let mut all = ClientResult::default();
    for task in tasks {
        match task.await {
            Ok(r) => all.merge(r),
            Err(e) => all.error(format!("client task: {e}")),
        }
    }
    let elapsed_s = all.last_ack.saturating_sub(start) as f64 / 1e6;
    let acknowledged = all.latencies.len();
    CreateReport {
        sent: all.sent,
        acknowledged,
        errors: all.errors,
        first_error: all.first_error,
        elapsed_s,
        per_second: if elapsed_s > 0.0 {
            (acknowledged as f64 / elapsed_s * 10.0).round() / 10.0
        } else {
            0.0
        },
        latency: Summary::of_micros(all.latencies),
    }
}

#[derive(Debug, Default)]
struct ClientResult {
    sent: usize,
    errors: usize,
    first_error: Option<String>,
    latencies: Vec<u64>,
    last_ack: u64,
}

impl ClientResult {
    fn error(&mut self, message: String) {
        self.errors += 1;
        self.first_error.get_or_insert(message);
    }

    fn merge(&mut self, other: Self) {
        self.sent += other.sent;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latencies.extend(other.latencies);
        self.last_ack = self.last_ack.max(other.last_ack);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_are_valid_jobs_with_one_unit_per_cluster() {
        let shape = JobShape {
            parallelism: 3,
            sim_duration: Some("200ms".into()),
        };
        let m: serde_json::Value = serde_json::from_str(&shape.manifest(7)).unwrap();
        assert_eq!(m["metadata"]["name"], "bench-000007");
        assert_eq!(m["spec"]["parallelism"], 3);
        assert_eq!(m["spec"]["completions"], 3);
        assert_eq!(
            m["spec"]["template"]["metadata"]["annotations"]["fedjob.io/sim-duration"],
            "200ms"
        );
        let job: k8s_openapi::api::batch::v1::Job = serde_json::from_value(m).unwrap();
        assert_eq!(job.spec.unwrap().template.spec.unwrap().containers.len(), 1);
    }
}
