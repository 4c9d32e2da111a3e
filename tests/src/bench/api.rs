//! `--api kube`: the cost of a create through the Kubernetes API (`--kube-api-listen`, what
//! kubectl and kube clients use) next to gRPC `CreateJob`, in the same run, against the same
//! scheduler, store and agents. The two APIs take turns in rounds (gRPC first in even rounds,
//! the Kubernetes API first in odd ones) so that a store growing or a machine getting busier
//! weighs on both alike; each API's figures add up over its turns.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use fedjob_proto::v1::{self, federation_client::FederationClient};
use serde::Serialize;
use serde_json::Value;

use super::agent_mode::round3;
use super::load::{JobShape, connect};
use super::procstat;
use super::stats::{Clock, Summary};

/// How long one create may take before it counts as failed.
const CREATE_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the Kubernetes API creates Jobs (kubectl's `create -f` POSTs here).
const JOBS_PATH: &str = "/apis/batch/v1/namespaces/default/jobs";

/// Which APIs a run creates Jobs through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ApiKind {
    /// gRPC `CreateJob` only.
    #[default]
    Grpc,
    /// gRPC, then the same number of creates through each API in turns (the comparison).
    Kube,
}

/// One API's creates over its turns.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ApiCreates {
    /// Creates acknowledged.
    pub acknowledged: usize,
    /// Creates refused or failed.
    pub errors: usize,
    /// The first error, when there was one.
    pub first_error: Option<String>,
    /// Acknowledged creates per second over this API's turns.
    pub per_second: f64,
    /// Send → acknowledgement of one create.
    pub latency: Summary,
    /// The scheduler's CPU time over this API's turns, seconds.
    pub scheduler_cpu_s: f64,
    /// The scheduler's CPU time per acknowledged create, microseconds.
    pub scheduler_cpu_us_per_create: f64,
}

/// gRPC next to the Kubernetes API.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ApiComparison {
    /// Turns each API had.
    pub rounds: usize,
    /// Jobs each API created (named `cmp-grpc-N`, `cmp-kube-N`).
    pub jobs_per_api: usize,
    /// Through gRPC `CreateJob`.
    pub grpc: ApiCreates,
    /// Through the Kubernetes API (`POST …/jobs`, JSON, as kubectl sends it).
    pub kube: ApiCreates,
    /// Kubernetes API ÷ gRPC: scheduler CPU per create (the cost; the target is ≤ 1.2).
    pub kube_over_grpc_cpu_per_create: f64,
    /// Kubernetes API ÷ gRPC: p99 create latency.
    pub kube_over_grpc_p99: f64,
    /// Kubernetes API ÷ gRPC: creates per second.
    pub kube_over_grpc_per_second: f64,
}

/// What one turn of creates saw.
#[derive(Debug, Default)]
struct Turn {
    errors: usize,
    first_error: Option<String>,
    latencies: Vec<u64>,
    elapsed_us: u64,
    cpu_s: f64,
}

impl Turn {
    fn error(&mut self, message: String) {
        self.errors += 1;
        self.first_error.get_or_insert(message);
    }

    fn add(&mut self, other: Self) {
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latencies.extend(other.latencies);
        self.elapsed_us += other.elapsed_us;
        self.cpu_s += other.cpu_s;
    }

    fn report(self) -> ApiCreates {
        let acknowledged = self.latencies.len();
        let per_create = |v: f64| {
            if acknowledged == 0 {
                0.0
            } else {
                round3(v * 1e6 / acknowledged as f64)
            }
        };
        ApiCreates {
            acknowledged,
            errors: self.errors,
            first_error: self.first_error,
            per_second: if self.elapsed_us > 0 {
                round3(acknowledged as f64 * 1e6 / self.elapsed_us as f64)
            } else {
                0.0
            },
            latency: Summary::of_micros(self.latencies),
            scheduler_cpu_s: round3(self.cpu_s),
            scheduler_cpu_us_per_create: per_create(self.cpu_s),
        }
    }
}

/// The manifests of `jobs` Jobs of `shape` named `PREFIX-N`, as JSON text, made before any
/// turn so that neither API's clock counts them.
fn manifests(shape: &JobShape, prefix: &str, jobs: usize) -> Vec<String> {
    (0..jobs)
        .map(|idx| {
            let mut m: Value =
                serde_json::from_str(&shape.manifest(idx)).expect("JobShape writes JSON");
            m["metadata"]["name"] = format!("{prefix}-{idx:06}").into();
            m.to_string()
        })
        .collect()
}

/// Sends `manifests` from `clients` (one task each, one request at a time) with `create`,
/// sampling the scheduler's (`pid`) CPU time around the turn.
async fn turn<C, F, Fut>(clients: Vec<C>, manifests: Vec<String>, pid: u32, create: F) -> Turn
where
    C: Send + 'static,
    F: Fn(C, String) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = (C, Result<(), String>)> + Send,
{
    let clock = Clock::start();
    let manifests = Arc::new(manifests);
    let next = Arc::new(AtomicUsize::new(0));
    let cpu_before = procstat::sample(pid).map(|s| s.cpu_s);
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|client| {
            let (manifests, next, create) = (manifests.clone(), next.clone(), create.clone());
            tokio::spawn(async move {
                let mut mine = Turn::default();
                let mut client = client;
                loop {
                    let idx = next.fetch_add(1, Ordering::Relaxed);
                    let Some(manifest) = manifests.get(idx) else {
                        return mine;
                    };
                    let sent = clock.now_us();
                    let answer =
                        tokio::time::timeout(CREATE_TIMEOUT, create(client, manifest.clone()))
                            .await;
                    let acked = clock.now_us();
                    match answer {
                        Ok((back, result)) => {
                            client = back;
                            match result {
                                Ok(()) => mine.latencies.push(acked - sent),
                                Err(e) => mine.error(e),
                            }
                        }
                        Err(_) => {
                            mine.error(format!("no answer within {CREATE_TIMEOUT:?}"));
                            return mine;
                        }
                    }
                }
            })
        })
        .collect();
    let mut all = Turn::default();
    for task in tasks {
        match task.await {
            Ok(t) => all.add(t),
            Err(e) => all.error(format!("client task: {e}")),
        }
    }
    all.elapsed_us = clock.now_us();
    let cpu_after = procstat::sample(pid).map(|s| s.cpu_s);
    if let (Ok(before), Ok(after)) = (cpu_before, cpu_after) {
        all.cpu_s = after - before;
    }
    all
}

/// A gRPC `CreateJob` of `manifest`.
async fn grpc_create(
    mut client: FederationClient<tonic::transport::Channel>,
    manifest: String,
) -> (
    FederationClient<tonic::transport::Channel>,
    Result<(), String>,
) {
    let request = v1::CreateJobRequest {
        manifest,
        ..Default::default()
    };
    let result = client
        .create_job(request)
        .await
        .map(drop)
        .map_err(|s| s.to_string());
    (client, result)
}

/// A Kubernetes API create of `manifest`: `POST …/jobs` with the JSON, as kubectl sends it.
async fn kube_create(client: kube::Client, manifest: String) -> (kube::Client, Result<(), String>) {
    let request = hyper::Request::post(JOBS_PATH)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(manifest.into_bytes())
        .expect("a valid request");
    let result = client
        .request_text(request)
        .await
        .map(drop)
        .map_err(|e| e.to_string());
    (client, result)
}

/// `clients` kube clients for the Kubernetes API at `url`, each with its own connection pool
/// (so one connection each, as each sends one request at a time).
/// Each has connected (it read `/version`) before its first create, as the gRPC clients have.
async fn kube_clients(url: &str, clients: usize) -> anyhow::Result<Vec<kube::Client>> {
    let uri: hyper::Uri = url.parse().with_context(|| format!("{url} is not a URL"))?;
    let mut all = Vec::with_capacity(clients.max(1));
    for _ in 0..clients.max(1) {
        let client = kube::Client::try_from(kube::Config::new(uri.clone()))
            .context("a kube client for the Kubernetes API")?;
        client
            .apiserver_version()
            .await
            .with_context(|| format!("connecting a kube client to {url}"))?;
        all.push(client);
    }
    Ok(all)
}

/// Creates `jobs` Jobs through each API, `rounds` turns each, with `clients` concurrent
/// clients per turn, measuring the scheduler process `pid`.
pub async fn compare(
    grpc_url: &str,
    kube_url: &str,
    pid: u32,
    shape: &JobShape,
    jobs: usize,
    clients: usize,
    rounds: usize,
) -> anyhow::Result<ApiComparison> {
    let rounds = rounds.clamp(1, jobs.max(1));
    let mut grpc_manifests = manifests(shape, "cmp-grpc", jobs).into_iter();
    let mut kube_manifests = manifests(shape, "cmp-kube", jobs).into_iter();
    let (mut grpc, mut kube) = (Turn::default(), Turn::default());
    for round in 0..rounds {
        // Round r creates the r-th part of each API's Jobs; the parts differ by at most one.
        let size = jobs / rounds + usize::from(round < jobs % rounds);
        let grpc_part: Vec<String> = grpc_manifests.by_ref().take(size).collect();
        let kube_part: Vec<String> = kube_manifests.by_ref().take(size).collect();
        for api in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
            if api == 0 {
                let channels = connect(grpc_url, clients).await?;
                let clients = channels.into_iter().map(FederationClient::new).collect();
                grpc.add(turn(clients, grpc_part.clone(), pid, grpc_create).await);
            } else {
                let clients = kube_clients(kube_url, clients).await?;
                kube.add(turn(clients, kube_part.clone(), pid, kube_create).await);
            }
        }
        eprintln!(
            "fedjob-bench: api comparison round {}/{rounds}: {} gRPC and {} Kubernetes API creates",
            round + 1,
            grpc.latencies.len(),
            kube.latencies.len()
        );
    }
    let (grpc, kube) = (grpc.report(), kube.report());
    let ratio = |k: f64, g: f64| if g > 0.0 { round3(k / g) } else { 0.0 };
    Ok(ApiComparison {
        rounds,
        jobs_per_api: jobs,
        kube_over_grpc_cpu_per_create: ratio(
            kube.scheduler_cpu_us_per_create,
            grpc.scheduler_cpu_us_per_create,
        ),
        kube_over_grpc_p99: ratio(kube.latency.p99_ms, grpc.latency.p99_ms),
        kube_over_grpc_per_second: ratio(kube.per_second, grpc.per_second),
        grpc,
        kube,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_api_gets_its_own_names_and_the_same_jobs() {
        let shape = JobShape {
            parallelism: 3,
            sim_duration: None,
        };
        let grpc = manifests(&shape, "cmp-grpc", 2);
        let kube = manifests(&shape, "cmp-kube", 2);
        let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        let (g, k) = (parse(&grpc[1]), parse(&kube[1]));
        assert_eq!(g["metadata"]["name"], "cmp-grpc-000001");
        assert_eq!(k["metadata"]["name"], "cmp-kube-000001");
        assert_eq!(g["spec"], k["spec"]);
        assert_eq!(g["spec"]["parallelism"], 3);
    }

    #[test]
    fn a_report_divides_cpu_by_acknowledged_creates() {
        let turn = Turn {
            errors: 1,
            first_error: Some("refused".into()),
            latencies: vec![1000, 3000],
            elapsed_us: 500_000,
            cpu_s: 0.001,
        };
        let r = turn.report();
        assert_eq!((r.acknowledged, r.errors), (2, 1));
        assert_eq!(r.per_second, 4.0);
        assert_eq!(r.scheduler_cpu_us_per_create, 500.0);
        assert_eq!(r.latency.max_ms, 3.0);
    }
}
