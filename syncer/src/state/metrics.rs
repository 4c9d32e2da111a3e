//! Prometheus metrics of the syncer, and the state its readiness probe reads.
//!
//! Counters are bumped where things happen; gauges of shards, queue and fence are read from
//! the shared state when scraped ([`Gauges`], passed to [`Metrics::encode`]), so they can never
//! drift from it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use fedjob_proto::v1::AssignmentAction;
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type FloatGauge = Gauge<f64, AtomicU64>;

/// The state the gauges show, read when scraped.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// How long no scheduler has spoken.
    pub silent: Duration,
    /// Assignments held, by action.
    pub held_by_action: Vec<(AssignmentAction, usize)>,
    /// Shards waiting for a worker.
    pub queue_depth: usize,
    /// Whether the self-fence is up.
    pub fenced: bool,
}

/// Labels of one write to the member cluster.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// `create` (a new shard), `apply` (an update), `delete`, or `fence` (the self-fence's own
    /// applies).
    pub verb: String,
    /// `ok`, or the reason it failed (`Conflict`, `Invalid`, `NamespaceNotFound`, …).
    pub outcome: String,
}

/// Labels naming a held assignment's action.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    /// `RUN`, `SUSPEND` or `DELETE`.
    pub action: String,
}

/// Every metric of the syncer.
pub struct Metrics {
    registry: Registry,
    /// Writes to the member cluster, by verb and outcome.
    pub cluster_writes: Family<WriteLabels, Counter>,
    /// Sessions with a scheduler that got in sync.
    pub sessions: Counter,
    /// Shard statuses sent to the scheduler.
    pub reports: Counter,
    /// Watch errors (each followed by a retry with backoff).
    pub watch_errors: Counter,
    in_sync: AtomicBool,
    last_session_error: Mutex<Option<String>>,
    scheduler_in_sync: Gauge,
    silent_seconds: FloatGauge,
    shards: Family<ActionLabels, Gauge>,
    queue_depth: Gauge,
    self_fenced: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric, named `fedjob_syncer_*`.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("fedjob_syncer");
        let metrics = Self {
            cluster_writes: Family::default(),
            sessions: Counter::default(),
            reports: Counter::default(),
            watch_errors: Counter::default(),
            in_sync: AtomicBool::new(false),
            last_session_error: Mutex::new(None),
            scheduler_in_sync: Gauge::default(),
            silent_seconds: FloatGauge::default(),
            shards: Family::default(),
            queue_depth: Gauge::default(),
            self_fenced: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "cluster_writes",
            "Writes (creates, server-side applies and deletes) to the member cluster, by verb and outcome",
            metrics.cluster_writes.clone(),
        );
        registry.register(
            "scheduler_sessions",
            "Sessions with a scheduler that got in sync",
            metrics.sessions.clone(),
        );
        registry.register(
            "status_reports",
            "Shard statuses sent to the scheduler",
            metrics.reports.clone(),
        );
        registry.register(
            "watch_errors",
            "Errors of the watch of labelled Jobs (each retried with backoff)",
            metrics.watch_errors.clone(),
        );
        registry.register(
            "scheduler_in_sync",
            "1 while a session with a scheduler is in sync",
            metrics.scheduler_in_sync.clone(),
        );
        registry.register(
            "scheduler_silent_seconds",
            "Seconds since a scheduler was last heard from",
            metrics.silent_seconds.clone(),
        );
        registry.register(
            "shards",
            "Shards whose assignment this syncer holds, by action",
            metrics.shards.clone(),
        );
        registry.register(
            "work_queue_depth",
            "Shards waiting for a worker",
            metrics.queue_depth.clone(),
        );
        registry.register(
            "self_fenced",
            "1 while the self-fence is up (no scheduler heard from for --self-fence-after)",
            metrics.self_fenced.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }

    /// Records one write to the member cluster: `outcome` is `Ok` or the failure's reason.
    pub fn write(&self, verb: &str, outcome: Result<(), String>) {
        let outcome = outcome.err().unwrap_or_else(|| "ok".to_owned());
        self.cluster_writes
            .get_or_create(&WriteLabels {
                verb: verb.to_owned(),
                outcome,
            })
            .inc();
    }

    /// A session got in sync (`true`) or ended (`false`).
    pub fn set_in_sync(&self, in_sync: bool) {
        let was = self.in_sync.swap(in_sync, Ordering::Relaxed);
        if in_sync && !was {
            self.sessions.inc();
            *self.last_session_error.lock() = None;
        }
    }

    /// Why the last session could not be opened or was lost (for `/readyz`).
    pub fn session_failed(&self, why: String) {
        *self.last_session_error.lock() = Some(why);
    }

    /// What `session_failed` last said, until a session is in sync again.
    pub fn last_session_error(&self) -> Option<String> {
        self.last_session_error.lock().clone()
    }

    /// Whether a session with a scheduler is in sync now.
    pub fn in_sync(&self) -> bool {
        self.in_sync.load(Ordering::Relaxed)
    }

    /// Encodes every metric in the Prometheus text format, with the gauges showing `now`.
    pub fn encode(&self, now: &Gauges) -> String {
        self.scheduler_in_sync.set(i64::from(self.in_sync()));
        self.silent_seconds.set(now.silent.as_secs_f64());
        self.shards.clear();
        for &(action, n) in &now.held_by_action {
            self.shards
                .get_or_create(&ActionLabels {
                    action: action
                        .as_str_name()
                        .trim_start_matches("ASSIGNMENT_ACTION_")
                        .to_owned(),
                })
                .set(n as i64);
        }
        self.queue_depth.set(now.queue_depth as i64);
        self.self_fenced.set(i64::from(now.fenced));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
