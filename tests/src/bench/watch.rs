//! `WatchJob` streams on the sampled Jobs: they say when the federated Job's aggregated view
//! first showed each cluster's report (agent mode) or the Job Complete (full mode).

use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use fedjob_proto::json::from_struct;
use fedjob_proto::shutdown::Shutdown;
use fedjob_proto::v1::{self, federation_client::FederationClient};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use super::load::connect;
use super::stats::Clock;
use super::tracker::{StatusProbes, cluster_index, job_name};

/// Streams per connection: below the HTTP/2 limit on concurrent streams that servers commonly
/// set (hyper's default is 200).
const STREAMS_PER_CONNECTION: usize = 100;

/// What a watch waits for before it closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Every cluster with a shard shows it Running (`active ≥ 1` in its placement).
    Running,
    /// The Job has the `Complete` condition.
    Complete,
}

/// How the watches went.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WatchReport {
    /// Watches opened.
    pub opened: usize,
    /// Watches that failed.
    pub errors: usize,
    /// The first failure, when there was one.
    pub first_error: Option<String>,
}

/// The watches of one run.
pub struct Watchers {
    channels: Vec<Channel>,
    clock: Clock,
    probes: Arc<StatusProbes>,
    until: Until,
    stop: Shutdown,
    tasks: Mutex<Vec<JoinHandle<Result<(), String>>>>,
}

impl Watchers {
    /// Connects enough channels to `url` for every probe's watch.
    pub async fn connect(
        url: &str,
        clock: Clock,
        probes: Arc<StatusProbes>,
        until: Until,
        stop: Shutdown,
    ) -> anyhow::Result<Arc<Self>> {
        let channels = connect(url, probes.len().div_ceil(STREAMS_PER_CONNECTION)).await?;
        Ok(Arc::new(Self {
            channels,
            clock,
            probes,
            until,
            stop,
            tasks: Mutex::new(Vec::new()),
        }))
    }

    /// Opens a watch on Job `idx` when it is sampled.
    pub fn watch_if_sampled(&self, idx: usize) {
        let Some(k) = self.probes.probe_of(idx) else {
            return;
        };
        let client = FederationClient::new(self.channels[k % self.channels.len()].clone());
        let task = tokio::spawn(watch_one(
            client,
            k,
            job_name(idx),
            self.clock,
            self.probes.clone(),
            self.until,
            self.stop.clone(),
        ));
        self.tasks.lock().push(task);
    }

    /// Waits (at most `timeout`) until every watch opened so far saw what it waits for.
    pub async fn wait_idle(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if self.tasks.lock().iter().all(|t| t.is_finished()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for every watch to end (the run's stop signal ends those still open).
    pub async fn finish(&self) -> WatchReport {
        let tasks = std::mem::take(&mut *self.tasks.lock());
        let mut report = WatchReport {
            opened: tasks.len(),
            ..Default::default()
        };
        for task in tasks {
            let result = match tokio::time::timeout(Duration::from_secs(10), task).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => Err(format!("watch task: {e}")),
                Err(_) => Err("a watch did not stop".to_owned()),
            };
            if let Err(e) = result {
                report.errors += 1;
                report.first_error.get_or_insert(e);
            }
        }
        report
    }
}

async fn watch_one(
    mut client: FederationClient<Channel>,
    k: usize,
    name: String,
    clock: Clock,
    probes: Arc<StatusProbes>,
    until: Until,
    stop: Shutdown,
) -> Result<(), String> {
    let request = v1::WatchJobRequest {
        namespace: String::new(),
        name: name.clone(),
    };
    let mut stream = client
        .watch_job(request)
        .await
        .map_err(|e| format!("WatchJob {name}: {e}"))?
        .into_inner();
    loop {
        let event = tokio::select! {
            e = stream.message() => e,
            _ = stop.fired() => return Ok(()),
        };
        let event = match event {
            Ok(Some(e)) => e,
            Ok(None) => return Err(format!("WatchJob {name}: stream ended")),
            Err(e) => return Err(format!("WatchJob {name}: {e}")),
        };
        let now = clock.now_us();
        probes.mark_open(k);
        let Some(job) = event.job else { continue };
        if observe(&job, k, now, &probes, until).map_err(|e| format!("{name}: {e}"))? {
            return Ok(());
        }
        if event.r#type == "DELETED" {
            return Err(format!("WatchJob {name}: deleted"));
        }
    }
}

/// Notes what `job` shows; returns whether the watch has seen all it waits for.
fn observe(
    job: &v1::FederatedJob,
    k: usize,
    now: u64,
    probes: &StatusProbes,
    until: Until,
) -> anyhow::Result<bool> {
    let mut all_running = !job.placements.is_empty();
    for p in &job.placements {
        if p.shards.is_empty() {
            continue;
        }
        if p.active >= 1 {
            let c = cluster_index(&p.cluster)
                .ok_or_else(|| anyhow!("unexpected cluster {:?}", p.cluster))?;
            probes.shown(k, c, now);
        } else {
            all_running = false;
        }
    }
    Ok(match until {
        Until::Running => all_running,
        Until::Complete => {
            let complete = is_complete(job);
            if complete {
                probes.completed(k, now);
            }
            complete
        }
    })
}

/// Whether the federated Job has `Complete=True` in its aggregated status.
pub fn is_complete(job: &v1::FederatedJob) -> bool {
    let Some(s) = &job.job else { return false };
    let value = from_struct(s);
    value["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Complete" && c["status"] == "True")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedjob_proto::json::to_struct;
    use serde_json::json;

    fn placement(cluster: &str, active: i32) -> v1::Placement {
        v1::Placement {
            cluster: cluster.into(),
            active,
            shards: vec![v1::Shard::default()],
            ..Default::default()
        }
    }

    #[test]
    fn running_needs_every_cluster_with_a_shard() {
        let probes = StatusProbes::new(1, 1, 2);
        let mut job = v1::FederatedJob {
            placements: vec![placement("c-0000", 1), placement("c-0001", 0)],
            ..Default::default()
        };
        assert!(!observe(&job, 0, 5, &probes, Until::Running).unwrap());
        assert!(probes.was_shown(0, 0) && !probes.was_shown(0, 1));
        job.placements[1].active = 2;
        assert!(observe(&job, 0, 9, &probes, Until::Running).unwrap());
        job.placements[0].cluster = "elsewhere".into();
        assert!(observe(&job, 0, 9, &probes, Until::Running).is_err());
    }

    #[test]
    fn complete_is_read_from_the_aggregated_conditions() {
        let probes = StatusProbes::new(1, 1, 1);
        let mut job = v1::FederatedJob {
            job: to_struct(&json!({"status": {"conditions": [
                {"type": "Complete", "status": "False"}]}})),
            placements: vec![placement("c-0000", 0)],
            ..Default::default()
        };
        assert!(!observe(&job, 0, 3, &probes, Until::Complete).unwrap());
        job.job = to_struct(&json!({"status": {"conditions": [
            {"type": "Complete", "status": "True"}]}}));
        assert!(observe(&job, 0, 4, &probes, Until::Complete).unwrap());
        assert_eq!(probes.complete_at(0), Some(4));
    }
}
