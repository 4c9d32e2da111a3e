//! What capacity reports cost the scheduler (`--nodes-per-cluster`, issue 14).
//!
//! Each simulated agent keeps a model of its member cluster ([`SimCluster`]): Node objects of
//! three instance types in three zones, read by the syncer's own [`NodeCapacity::of`], and pods
//! of assorted sizes bound to them. Every `--capacity-interval`, pods finish or start on a share
//! of the nodes (`--capacity-churn`), so free capacity really changes between reports and
//! nothing is deduplicated away. Nodes are packed unevenly, so their free amounts differ: the
//! full report carries about one group per node, the worst case for the compaction.
//!
//! The agent reports as `fedjob-syncer --report-capacity` does: nodes grouped by shape and free
//! resources ([`free`]), compacted by the same [`Reporter`] (full on the stream's first report,
//! then only the groups that changed), sent right after a heartbeat and only when something
//! changed, paced by the same [`Pacing`] (`--capacity-bytes-per-heartbeat`: after a report of
//! N bytes, the next waits ⌈N ÷ budget⌉ heartbeats).
//!
//! [`measure`] runs before any Job is created: a window of heartbeats alone, then every agent's
//! full report, then a window of the same length with heartbeats and capacity reports; for
//! each window the scheduler's CPU, the reports' encoded size and whether every cluster stayed
//! Ready. Reports go on through the Job load that follows.

mod measure;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fedjob_proto::capacity::{Amounts, Groups, NodeCapacity, Pacing, Reporter, free};
use fedjob_proto::v1;
use prost::Message as _;
use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};
use serde::Serialize;
use serde_json::json;

pub use measure::{CapacityResults, FullReports, Window, measure};

/// An instance type of the simulated nodes: `status.allocatable` as the kubelet reports it.
struct NodeType {
    name: &'static str,
    cpu: &'static str,
    memory: &'static str,
    gpus: Option<&'static str>,
    /// Nodes of this type out of every ten.
    per_ten: usize,
}

const NODE_TYPES: [NodeType; 3] = [
    NodeType {
        name: "m5.4xlarge",
        cpu: "15890m",
        memory: "62186Mi",
        gpus: None,
        per_ten: 6,
    },
    NodeType {
        name: "r5.2xlarge",
        cpu: "7910m",
        memory: "124454Mi",
        gpus: None,
        per_ten: 3,
    },
    NodeType {
        name: "p3.8xlarge",
        cpu: "31850m",
        memory: "239304Mi",
        gpus: Some("4"),
        per_ten: 1,
    },
];

const ZONES: [&str; 3] = ["eu-west-1a", "eu-west-1b", "eu-west-1c"];

/// Pods per node, as the kubelet's default `maxPods`.
const MAX_PODS: &str = "110";

/// Pod sizes: (millicores, MiB, GPUs). GPU pods tolerate the GPU nodes' taint and go there
/// only; the others go to the untainted nodes.
const POD_SIZES: [(i64, i64, i64); 10] = [
    (100, 128, 0),
    (250, 256, 0),
    (250, 384, 0),
    (500, 512, 0),
    (500, 1536, 0),
    (1000, 2048, 0),
    (1000, 3072, 0),
    (2000, 4096, 0),
    (4000, 12288, 0),
    (8000, 30720, 1),
];

const MIB: i64 = 1 << 20;

/// The Node object of `kind` in `zone`, as the API server shows it.
fn node_object(kind: &NodeType, zone: &str, index: usize) -> serde_json::Value {
    let mut allocatable = json!({"cpu": kind.cpu, "memory": kind.memory, "pods": MAX_PODS});
    let mut taints = json!([]);
    if let Some(gpus) = kind.gpus {
        allocatable["nvidia.com/gpu"] = json!(gpus);
        taints = json!([{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]);
    }
    json!({
        "metadata": {"name": format!("node-{index}"), "labels": {
            "kubernetes.io/hostname": format!("node-{index}"),
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "node.kubernetes.io/instance-type": kind.name,
            "topology.kubernetes.io/zone": zone,
        }},
        "spec": {"taints": taints},
        "status": {"allocatable": allocatable, "conditions": [{"type": "Ready", "status": "True"}]}
    })
}

/// How the simulated clusters report capacity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CapacitySettings {
    /// Nodes in every cluster.
    pub nodes_per_cluster: usize,
    /// How often pods finish or start, seconds (reports still go at most once per heartbeat,
    /// and as the pacing lets them).
    pub change_interval_s: f64,
    /// Share of the nodes whose pods change each interval.
    pub churn: f64,
    /// The agents' [`Pacing`] budget, bytes per heartbeat.
    pub bytes_per_heartbeat: u64,
    /// Length of each measuring window, seconds.
    pub window_s: f64,
}

/// A pod size for a node (GPU pods on GPU nodes only, half of their pods).
fn pod_for(gpu_node: bool, rng: &mut SmallRng) -> usize {
    if gpu_node && rng.random_bool(0.5) {
        POD_SIZES.len() - 1
    } else {
        rng.random_range(0..POD_SIZES.len() - 1)
    }
}

/// One simulated node: which of the cluster's node objects it is, and its pods.
#[derive(Debug, Clone, Default)]
struct SimNode {
    kind: usize,
    cpu: i64,
    memory: i64,
    gpus: i64,
    /// Indexes into [`POD_SIZES`].
    pods: Vec<u8>,
}

/// A member cluster's nodes and pods, and the agent's report state, as the syncer keeps them.
pub struct SimCluster {
    /// What each (type, zone) offers, read from its Node object.
    kinds: Vec<NodeCapacity>,
    nodes: Vec<SimNode>,
    groups: Groups,
    reporter: Reporter,
    rng: SmallRng,
    churn_nodes: usize,
    /// Whether a group changed since the last report. Without one the [`Reporter`], which
    /// rebuilds and compares every group on each call, would find nothing: asking it anyway on
    /// every heartbeat of a thousand agents in one process spends CPU the scheduler shares.
    dirty: bool,
}

impl SimCluster {
    /// A cluster of `nodes` nodes packed unevenly (each to a random 20–95 % of its CPU), the
    /// same for the same `seed`.
    pub fn new(nodes: usize, churn: f64, seed: u64) -> Self {
        // Kind `type * 3 + zone`.
        let mut kinds = Vec::new();
        for kind in &NODE_TYPES {
            for zone in ZONES {
                let node = node_object(kind, zone, kinds.len());
                kinds.push(NodeCapacity::of(&node).expect("a Ready, schedulable node"));
            }
        }
        let mut rng = SmallRng::seed_from_u64(seed);
        let slots: Vec<usize> = NODE_TYPES
            .iter()
            .enumerate()
            .flat_map(|(t, k)| std::iter::repeat_n(t, k.per_ten))
            .collect();
        let mut cluster = Self {
            nodes: Vec::with_capacity(nodes),
            kinds,
            groups: Groups::new(),
            reporter: Reporter::default(),
            rng: SmallRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15),
            churn_nodes: ((nodes as f64 * churn).round() as usize).max(1),
            dirty: true,
        };
        for i in 0..nodes {
            let t = slots[i % slots.len()];
            let kind = t * ZONES.len() + (i / slots.len()) % ZONES.len();
            let mut node = SimNode {
                kind,
                ..SimNode::default()
            };
            let target = rng.random_range(0.20..0.95) * cluster.allocatable(&node, "cpu") as f64;
            for _ in 0..200 {
                if node.cpu as f64 >= target {
                    break;
                }
                let size = pod_for(cluster.allocatable(&node, "nvidia.com/gpu") > 0, &mut rng);
                cluster.start(&mut node, size);
            }
            let key = cluster.key(&node);
            *cluster.groups.entry(key).or_default() += 1;
            cluster.nodes.push(node);
        }
        cluster
    }

    fn allocatable(&self, node: &SimNode, resource: &str) -> i64 {
        self.kinds[node.kind]
            .allocatable
            .get(resource)
            .copied()
            .unwrap_or(0)
    }

    /// Starts a pod of `size` on `node` if it fits; returns whether it did.
    fn start(&self, node: &mut SimNode, size: usize) -> bool {
        let (cpu, mib, gpus) = POD_SIZES[size];
        let fits = node.cpu + cpu <= self.allocatable(node, "cpu")
            && node.memory + mib * MIB <= self.allocatable(node, "memory")
            && node.gpus + gpus <= self.allocatable(node, "nvidia.com/gpu")
            && (node.pods.len() as i64) < self.allocatable(node, "pods");
        if fits {
            node.cpu += cpu;
            node.memory += mib * MIB;
            node.gpus += gpus;
            node.pods.push(size as u8);
        }
        fits
    }

    /// The group `node` counts in: its shape and what is free on it.
    fn key(&self, node: &SimNode) -> (fedjob_proto::capacity::Shape, Amounts) {
        let mut requested = Amounts::from([
            ("cpu".to_owned(), node.cpu),
            ("memory".to_owned(), node.memory),
        ]);
        if node.gpus > 0 {
            requested.insert("nvidia.com/gpu".to_owned(), node.gpus);
        }
        let kind = &self.kinds[node.kind];
        (
            kind.shape.clone(),
            free(&kind.allocatable, &requested, node.pods.len() as i64),
        )
    }

    /// One interval: on `churn` of the nodes a pod finishes or one starts.
    pub fn step(&mut self) {
        for _ in 0..self.churn_nodes {
            let i = self.rng.random_range(0..self.nodes.len());
            let mut node = std::mem::take(&mut self.nodes[i]);
            let old = self.key(&node);
            let size = pod_for(self.allocatable(&node, "nvidia.com/gpu") > 0, &mut self.rng);
            // Half the time a pod starts, if it fits; otherwise one finishes.
            let started = self.rng.random_bool(0.5) && self.start(&mut node, size);
            if !started && !node.pods.is_empty() {
                let p = self.rng.random_range(0..node.pods.len());
                let (cpu, mib, gpus) = POD_SIZES[node.pods.swap_remove(p) as usize];
                node.cpu -= cpu;
                node.memory -= mib * MIB;
                node.gpus -= gpus;
            }
            let new = self.key(&node);
            if new != old {
                if let Some(n) = self.groups.get_mut(&old) {
                    *n -= 1;
                    if *n == 0 {
                        self.groups.remove(&old);
                    }
                }
                *self.groups.entry(new).or_default() += 1;
                self.dirty = true;
            }
            self.nodes[i] = node;
        }
    }

    /// The report to send now, if anything changed since the last one.
    pub fn report(&mut self) -> Option<v1::CapacityReport> {
        if !std::mem::take(&mut self.dirty) {
            return None;
        }
        self.reporter.report(&self.groups)
    }

    /// Nodes per group, for tests.
    pub fn groups(&self) -> &Groups {
        &self.groups
    }
}

/// Counts every agent adds to while capacity is measured.
#[derive(Debug, Default)]
pub struct Tally {
    /// Whether agents report capacity now.
    on: AtomicBool,
    heartbeats: AtomicU64,
    max_rtt_us: AtomicU64,
    /// Heartbeat timings while a window collects them (`None` otherwise, so the Job load that
    /// follows does not grow them).
    timings: parking_lot::Mutex<Option<Timings>>,
    full_reports: AtomicU64,
    full_bytes: AtomicU64,
    full_max_bytes: AtomicU64,
    full_groups: AtomicU64,
    deltas: AtomicU64,
    deltas_in_full: AtomicU64,
    delta_bytes: AtomicU64,
    delta_max_bytes: AtomicU64,
    delta_groups: AtomicU64,
}

/// Heartbeat timings of a window, µs.
#[derive(Debug, Default)]
struct Timings {
    /// Heartbeat → acknowledgement.
    rtts: Vec<u64>,
    /// How long after it was due each heartbeat went out (the bench's own delay).
    late: Vec<u64>,
}

/// A snapshot of a [`Tally`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Counts {
    heartbeats: u64,
    full_reports: u64,
    full_bytes: u64,
    full_groups: u64,
    deltas: u64,
    deltas_in_full: u64,
    delta_bytes: u64,
    delta_groups: u64,
}

impl Tally {
    /// Whether agents report capacity now.
    pub fn on(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }

    /// A heartbeat went out `late_us` after it was due.
    pub fn heartbeat(&self, late_us: u64) {
        self.heartbeats.fetch_add(1, Ordering::Relaxed);
        if let Some(t) = self.timings.lock().as_mut() {
            t.late.push(late_us);
        }
    }

    /// A heartbeat came back after `rtt_us`.
    pub fn acked(&self, rtt_us: u64) {
        self.max_rtt_us.fetch_max(rtt_us, Ordering::Relaxed);
        if let Some(t) = self.timings.lock().as_mut() {
            t.rtts.push(rtt_us);
        }
    }

    /// A report of `bytes` encoded went out, the first of its stream or a change after it
    /// (sent in full when the changes outnumbered the groups).
    pub fn reported(&self, first: bool, report: &v1::CapacityReport, bytes: u64) {
        let groups = report.group_count() as u64;
        if first {
            self.full_reports.fetch_add(1, Ordering::Relaxed);
            self.full_bytes.fetch_add(bytes, Ordering::Relaxed);
            self.full_groups.fetch_add(groups, Ordering::Relaxed);
            self.full_max_bytes.fetch_max(bytes, Ordering::Relaxed);
        } else {
            self.deltas.fetch_add(1, Ordering::Relaxed);
            self.deltas_in_full
                .fetch_add(u64::from(report.full), Ordering::Relaxed);
            self.delta_bytes.fetch_add(bytes, Ordering::Relaxed);
            self.delta_groups.fetch_add(groups, Ordering::Relaxed);
            self.delta_max_bytes.fetch_max(bytes, Ordering::Relaxed);
        }
    }

    /// Starts keeping every heartbeat's timings.
    fn collect_timings(&self) {
        *self.timings.lock() = Some(Timings::default());
    }

    /// The timings kept since [`Self::collect_timings`], and stops keeping them.
    fn take_timings(&self) -> Timings {
        self.timings.lock().take().unwrap_or_default()
    }

    fn counts(&self) -> Counts {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counts {
            heartbeats: get(&self.heartbeats),
            full_reports: get(&self.full_reports),
            full_bytes: get(&self.full_bytes),
            full_groups: get(&self.full_groups),
            deltas: get(&self.deltas),
            deltas_in_full: get(&self.deltas_in_full),
            delta_bytes: get(&self.delta_bytes),
            delta_groups: get(&self.delta_groups),
        }
    }
}

/// What one agent needs to report capacity.
#[derive(Debug, Clone)]
pub struct CapacityFeed {
    /// The settings.
    pub settings: CapacitySettings,
    /// Where every agent counts.
    pub tally: Arc<Tally>,
}

/// One agent's capacity reporting, driven by its heartbeat task.
pub struct AgentCapacity {
    feed: CapacityFeed,
    /// Built with the agent, before any window, so that building it neither shifts the
    /// agent's heartbeats between the windows nor counts in them.
    cluster: SimCluster,
    /// Where in each change interval this cluster changes, as a share of it: clusters change
    /// independently, not all at the same instant.
    phase: f64,
    /// When reporting started, and the model's steps taken since.
    clock: Option<(Instant, u64)>,
    pacing: Pacing,
    /// The stream's first report went.
    opened: bool,
}

impl AgentCapacity {
    /// Reporting for cluster `seed`, whose model is built now and changes `phase` (a share of
    /// the change interval) into each interval.
    pub fn new(feed: CapacityFeed, seed: u64, phase: f64) -> Self {
        let settings = feed.settings;
        Self {
            cluster: SimCluster::new(settings.nodes_per_cluster, settings.churn, seed),
            phase,
            pacing: Pacing::new(settings.bytes_per_heartbeat),
            feed,
            clock: None,
            opened: false,
        }
    }

    /// Called right after each heartbeat, which went out `late` after it was due: the message
    /// to send, if reporting is on, something changed since the last report and the pacing
    /// lets one go.
    pub fn after_heartbeat(&mut self, late: Duration) -> Option<v1::AgentMessage> {
        self.feed.tally.heartbeat(late.as_micros() as u64);
        if !self.feed.tally.on() {
            return None;
        }
        let interval = self.feed.settings.change_interval_s;
        let (since, steps) = self.clock.get_or_insert_with(|| (Instant::now(), 0));
        let due = (since.elapsed().as_secs_f64() / interval + self.phase) as u64;
        while *steps < due {
            self.cluster.step();
            *steps += 1;
        }
        if !self.pacing.heartbeat() {
            return None;
        }
        let report = self.cluster.report()?;
        self.pacing.sent(report.encoded_len() as u64);
        let message = v1::AgentMessage {
            msg: Some(v1::agent_message::Msg::Capacity(report)),
        };
        let bytes = message.encoded_len() as u64;
        if let Some(v1::agent_message::Msg::Capacity(r)) = &message.msg {
            self.feed.tally.reported(!self.opened, r, bytes);
        }
        self.opened = true;
        Some(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedjob_proto::capacity::ClusterCapacity;

    #[test]
    fn a_cluster_has_every_node_and_changes_each_step() {
        let mut c = SimCluster::new(1000, 0.05, 7);
        assert_eq!(c.groups().values().sum::<u32>(), 1000);
        assert!(
            c.groups().len() > 800,
            "uneven packing leaves most nodes with their own free amounts: {}",
            c.groups().len()
        );
        let mut seen = ClusterCapacity::default();
        let full = c.report().unwrap();
        assert!(full.full);
        assert_eq!(full.shapes.len(), 9, "three types in three zones");
        seen.apply(&full).unwrap();
        for _ in 0..5 {
            c.step();
            let delta = c.report().expect("every step changes some nodes");
            assert!(!delta.full && delta.shapes.is_empty());
            assert!(delta.group_count() <= 2 * 50, "{}", delta.group_count());
            seen.apply(&delta).unwrap();
            assert_eq!(&seen.to_groups(), c.groups());
        }
        assert_eq!(c.report(), None, "nothing changed since");
    }

    #[test]
    fn nodes_never_exceed_what_they_offer() {
        let mut c = SimCluster::new(200, 0.5, 3);
        for _ in 0..50 {
            c.step();
        }
        for (_, free) in c.groups().keys() {
            assert!(free.values().all(|&v| v >= 0), "{free:?}");
        }
        let pods: usize = c.nodes.iter().map(|n| n.pods.len()).sum();
        assert!(pods > 200, "nodes run pods: {pods}");
    }
}
