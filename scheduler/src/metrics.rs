//! Prometheus metrics of the scheduler, served in the text format on `--metrics-listen`.
//!
//! Counters and histograms are updated where things happen; gauges of Jobs and clusters by state
//! are computed when scraped, from the control plane's state, so they can never drift.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of one RPC outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    /// `Service/Method`.
    pub method: String,
    /// gRPC status code name, e.g. `Ok`, `InvalidArgument`.
    pub code: String,
}

/// Labels naming one RPC method.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    /// `Service/Method`.
    pub method: String,
}

/// Labels of one Kubernetes API request's outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KubeRequestLabels {
    /// The API verb: `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, or
    /// `discovery` for discovery and OpenAPI documents.
    pub verb: String,
    /// The resource (`jobs`, `jobs/status`); empty for discovery.
    pub resource: String,
    /// The HTTP status code.
    pub code: u16,
}

/// Labels naming a Kubernetes API verb on a resource.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KubeVerbLabels {
    /// The API verb.
    pub verb: String,
    /// The resource.
    pub resource: String,
}

/// Labels naming a state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// The state.
    pub state: String,
}

/// Labels naming why a request was refused.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why.
    pub reason: String,
}

/// Every metric of the scheduler.
pub struct Metrics {
    registry: Registry,
    /// RPCs handled, by method and status code.
    pub rpc_requests: Family<RpcLabels, Counter>,
    /// RPC latency, by method.
    pub rpc_duration: Family<MethodLabels, Histogram>,
    /// Kubernetes API requests handled, by verb, resource and status code.
    pub kube_requests: Family<KubeRequestLabels, Counter>,
    /// Kubernetes API latency (to the response head; a watch counts until it starts), by verb
    /// and resource.
    pub kube_duration: Family<KubeVerbLabels, Histogram>,
    /// Store commit latency (one group commit).
    pub store_commit: Histogram,
    /// Transactions per group commit.
    pub store_batch: Histogram,
    /// Agent streams open.
    pub agent_sessions: Gauge,
    /// Users' writes of Jobs waiting for a turn (`--concurrent-job-writes`).
    pub job_writes_waiting: Gauge,
    /// Shard status reports received.
    pub shard_reports: Counter,
    /// Writes of shard reports applied to their Job's counters alone.
    pub reports_counted: Counter,
    /// Writes of shard reports that planned their Job again.
    pub reports_replanned: Counter,
    /// Assignments sent to agents.
    pub assignments_sent: Counter,
    /// Messages carrying them.
    pub assignment_messages: Counter,
    /// Requests refused by access control or for breaking the agent protocol, by reason.
    pub refused: Family<ReasonLabels, Counter>,
    /// Federated Jobs by state (set at scrape time).
    pub jobs: Family<StateLabels, Gauge>,
    /// Clusters by state (set at scrape time).
    pub clusters: Family<StateLabels, Gauge>,
    /// 1 while this replica leads (set at scrape time).
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("fedjob");
        let rpc_requests = Family::<RpcLabels, Counter>::default();
        let rpc_duration = Family::<MethodLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        let kube_requests = Family::<KubeRequestLabels, Counter>::default();
        let kube_duration = Family::<KubeVerbLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        let store_commit = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        let store_batch = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        let agent_sessions = Gauge::default();
        let job_writes_waiting = Gauge::default();
        let shard_reports = Counter::default();
        let reports_counted = Counter::default();
        let reports_replanned = Counter::default();
        let assignments_sent = Counter::default();
        let assignment_messages = Counter::default();
        let refused = Family::<ReasonLabels, Counter>::default();
        let jobs = Family::<StateLabels, Gauge>::default();
        let clusters = Family::<StateLabels, Gauge>::default();
        let leader = Gauge::default();
        registry.register(
            "grpc_requests",
            "gRPC requests handled",
            rpc_requests.clone(),
        );
        registry.register(
            "grpc_request_duration_seconds",
            "gRPC request latency",
            rpc_duration.clone(),
        );
        registry.register(
            "kube_api_requests",
            "Kubernetes API requests handled",
            kube_requests.clone(),
        );
        registry.register(
            "kube_api_request_duration_seconds",
            "Kubernetes API request latency",
            kube_duration.clone(),
        );
        registry.register(
            "store_commit_duration_seconds",
            "Latency of one durable store commit",
            store_commit.clone(),
        );
        registry.register(
            "store_commit_batch_size",
            "Transactions written by one store commit",
            store_batch.clone(),
        );
        registry.register(
            "agent_sessions",
            "Agent streams open",
            agent_sessions.clone(),
        );
        registry.register(
            "job_writes_waiting",
            "Users' writes of Jobs waiting for a turn (--concurrent-job-writes)",
            job_writes_waiting.clone(),
        );
        registry.register(
            "shard_reports",
            "Shard status reports received",
            shard_reports.clone(),
        );
        registry.register(
            "shard_report_writes_counted",
            "Writes of shard reports applied to their Job's counters without planning it again",
            reports_counted.clone(),
        );
        registry.register(
            "shard_report_writes_replanned",
            "Writes of shard reports that planned their Job again (a shard ended, succeeded moved)",
            reports_replanned.clone(),
        );
        registry.register(
            "assignments_sent",
            "Assignments sent to agents",
            assignments_sent.clone(),
        );
        registry.register(
            "assignment_messages_sent",
            "Messages of assignments sent to agents (each carries one or more)",
            assignment_messages.clone(),
        );
        registry.register(
            "requests_refused",
            "Requests refused (no or wrong credentials, wrong cluster identity, protocol broken)",
            refused.clone(),
        );
        registry.register("jobs", "Federated Jobs by state", jobs.clone());
        registry.register("clusters", "Member clusters by state", clusters.clone());
        registry.register(
            "leader",
            "Whether this replica does the work that must happen once",
            leader.clone(),
        );
        Self {
            registry,
            rpc_requests,
            rpc_duration,
            kube_requests,
            kube_duration,
            store_commit,
            store_batch,
            agent_sessions,
            job_writes_waiting,
            shard_reports,
            reports_counted,
            reports_replanned,
            assignments_sent,
            assignment_messages,
            refused,
            jobs,
            clusters,
            leader,
        }
    }

    /// Records one RPC.
    pub fn observe_rpc(&self, method: &str, code: tonic::Code, elapsed: Duration) {
        self.rpc_requests
            .get_or_create(&RpcLabels {
                method: method.to_owned(),
                code: format!("{code:?}"),
            })
            .inc();
        self.rpc_duration
            .get_or_create(&MethodLabels {
                method: method.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Records one Kubernetes API request.
    pub fn observe_kube_request(&self, verb: &str, resource: &str, code: u16, elapsed: Duration) {
        self.kube_requests
            .get_or_create(&KubeRequestLabels {
                verb: verb.to_owned(),
                resource: resource.to_owned(),
                code,
            })
            .inc();
        self.kube_duration
            .get_or_create(&KubeVerbLabels {
                verb: verb.to_owned(),
                resource: resource.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Sets a state gauge family to exactly `counts`.
    pub fn set_states(family: &Family<StateLabels, Gauge>, counts: &[(&str, i64)]) {
        family.clear();
        for (state, n) in counts {
            family
                .get_or_create(&StateLabels {
                    state: (*state).to_owned(),
                })
                .set(*n);
        }
    }

    /// Encodes every metric in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

impl crate::store::CommitObserver for Metrics {
    fn commit(&self, latency: Duration, txns: usize) {
        self.store_commit.observe(latency.as_secs_f64());
        self.store_batch.observe(txns as f64);
    }
}
